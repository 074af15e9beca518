//! The Kubernetes API calls a crate's code makes, found by reading its source (`src/`, test
//! modules excluded), so the chart's RBAC can be checked against the code rather than against a
//! list kept by hand.
//!
//! What it recognises, per function:
//! - `Api` values bound by `let x: Api<K> = Api::all(..) | Api::namespaced(..) |
//!   Api::namespaced_with(..)`, by `let x = Api::<K>::…(..)`, or taken as a parameter
//!   `x: &Api<K>`;
//! - the kube calls on them: `x.get(`, `get_opt`, `list`, `create`, `replace`, `patch`,
//!   `patch_status`, `replace_status`, `delete`, `delete_collection`, `watch`, and
//!   `watcher(x, …)`; a `patch` whose arguments hold `Patch::Apply` may create the object
//!   (server-side apply), so it needs `create` too;
//! - a generic `Api<K>` resolved through the turbofish calls of its function in the same file
//!   (`watch::<Site>(…)`), and `Api<DynamicObject>` resolved through an `ApiResource` of the
//!   project's `GROUP` (every custom resource of the group);
//! - `Recorder::new` (kube's event recorder: `events.k8s.io` Events, `create` and `patch`);
//! - where the calls land: `Api::all` is cluster-wide; `Api::namespaced` with the process's
//!   own namespace (an expression ending in `namespace` or `config_namespace` that is not a
//!   field of a key, owner or update) is its own namespace; any other namespace expression is
//!   any namespace;
//! - whether a `list` or `watcher` selects objects by name: its parameters (inline, or a
//!   variable bound by `let` in the same function) hold a `metadata.name=` field selector, which
//!   is what lets RBAC's `resourceNames` allow a list or watch.
//!
//! What it refuses (the scan fails, naming the place, so the check is never silently
//! incomplete): a method on an `Api` value it does not know, an `Api` value with no recognised
//! call, a generic `Api<K>` it cannot resolve, `Controller::new`, `metadata_watcher`,
//! `reflector`, `Api::default_namespaced`, and raw `client.request` calls.

use anyhow::{bail, Context as _};
use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a call lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `Api::all`: every namespace at once (needs a ClusterRole).
    Cluster,
    /// A namespace taken from the object being handled (needs a ClusterRole).
    AnyNamespace,
    /// The process's own namespace (a Role there suffices).
    OwnNamespace,
}

/// One kind of API call the code makes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// The Rust type named in `Api<…>` (`Secret`, `SipDevice`, `Lease`), `DynamicObject:GROUP`
    /// for a dynamic API of the project's group, or `events.k8s.io/Event` for the recorder.
    pub kind: String,
    /// The RBAC verb.
    pub verb: String,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<String>,
    /// Where it lands.
    pub scope: Scope,
    /// `file:line` of the call.
    pub at: String,
    /// A list or watch restricted to named objects (a `metadata.name` field selector), so a
    /// rule with `resourceNames` can allow it. Every other call may touch any name.
    pub by_name: bool,
}

/// Blanks comments (keeping line breaks and string literals), so that commented-out code
/// and prose are not read as calls.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str(&src[start..i.min(b.len())]);
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // a char literal like '"'
            out.push_str(&src[i..i + 3]);
            i += 3;
        } else {
            let ch = src[i..].chars().next().expect("char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Index just past the brace block starting at `open` (which holds `{`).
fn block_end(s: &str, open: usize) -> usize {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Removes inline `#[cfg(test)] mod x { … }` blocks; returns the names of `#[cfg(test)] mod x;`
/// file modules.
fn strip_test_modules(src: &str) -> (String, Vec<String>) {
    let re = Regex::new(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")
        .expect("regex");
    let mut out = src.to_string();
    let mut files = Vec::new();
    while let Some(c) = re.captures(&out.clone()) {
        let m = c.get(0).expect("match");
        if &c[2] == ";" {
            files.push(c[1].to_string());
            out.replace_range(m.range(), "");
        } else {
            let end = block_end(&out, m.end() - 1);
            out.replace_range(m.start()..end, "");
        }
    }
    (out, files)
}

fn line_of(s: &str, pos: usize) -> usize {
    s[..pos].matches('\n').count() + 1
}

/// A function: its name, generic parameters, signature and body, and where it starts.
struct Function<'a> {
    name: String,
    generics: Vec<String>,
    text: &'a str,
    start: usize,
}

impl<'a> Function<'a> {
    /// Its text up to the body's `{`: name, generics and parameters.
    fn signature(&self) -> &'a str {
        &self.text[..self.text.find('{').unwrap_or(self.text.len())]
    }
}

fn functions(src: &str) -> Vec<Function<'_>> {
    let re = Regex::new(r"\bfn\s+(\w+)\s*(?:<([^>]*)>)?\s*\(").expect("regex");
    let mut out = Vec::new();
    for c in re.captures_iter(src) {
        let m = c.get(0).expect("match");
        // The body's `{` is the first one at parenthesis depth 0 after the parameters.
        let b = src.as_bytes();
        let mut depth = 0i32;
        let mut i = m.end() - 1;
        let mut open = None;
        while i < b.len() {
            match b[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'{' if depth == 0 => {
                    open = Some(i);
                    break;
                }
                b';' if depth == 0 => break, // a declaration without a body
                _ => {}
            }
            i += 1;
        }
        let Some(open) = open else { continue };
        let end = block_end(src, open);
        let generics = c
            .get(2)
            .map(|g| {
                g.as_str()
                    .split(',')
                    .filter_map(|p| p.split(':').next())
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty() && !p.starts_with('\''))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Function {
            name: c[1].to_string(),
            generics,
            text: &src[m.start()..end],
            start: m.start(),
        });
    }
    out
}

/// The scope a constructor expression gives.
fn scope_of(ctor: &str, namespace_arg: &str) -> Scope {
    if ctor == "all" {
        return Scope::Cluster;
    }
    let arg = namespace_arg
        .trim()
        .trim_start_matches('&')
        .trim_end_matches(".clone()")
        .trim_end_matches(".as_str()")
        .trim();
    let own = ["namespace", "config_namespace"];
    let last = arg.rsplit('.').next().unwrap_or(arg);
    let owner_field = ["key.", "owner.", "update.", "obj.", "object."]
        .iter()
        .any(|p| arg.contains(p));
    if own.contains(&last) && !owner_field {
        Scope::OwnNamespace
    } else {
        Scope::AnyNamespace
    }
}

/// Splits a call's argument list at top-level commas.
fn args_of(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for ch in s.chars() {
        match ch {
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().expect("arg").push(ch);
    }
    out
}

/// Text of a parenthesised argument list starting at `open` (which holds `(`).
fn paren_text(s: &str, open: usize) -> &str {
    let b = s.as_bytes();
    let mut depth = 0;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..i];
                }
            }
            _ => {}
        }
    }
    &s[open + 1..]
}

fn verbs_of(method: &str, args: &str) -> Option<(Vec<&'static str>, Option<&'static str>)> {
    let apply = args.contains("Patch::Apply");
    Some(match method {
        "get" | "get_opt" | "get_metadata" | "get_metadata_opt" => (vec!["get"], None),
        "get_status" => (vec!["get"], Some("status")),
        "list" | "list_metadata" => (vec!["list"], None),
        "watch" | "watch_metadata" => (vec!["watch"], None),
        "create" => (vec!["create"], None),
        "replace" => (vec!["update"], None),
        "replace_status" => (vec!["update"], Some("status")),
        "patch" | "patch_metadata" if apply => (vec!["patch", "create"], None),
        "patch" | "patch_metadata" => (vec!["patch"], None),
        "patch_status" => (vec!["patch"], Some("status")),
        "delete" => (vec!["delete"], None),
        "delete_collection" => (vec!["deletecollection"], None),
        _ => return None,
    })
}

/// Whether a call's argument text selects by `metadata.name`: inline, or through a variable of
/// the argument list bound by a `let` statement of `function` that holds the selector.
fn selects_by_name(function: &str, args: &str) -> bool {
    const SELECTOR: &str = "metadata.name=";
    if args.contains(SELECTOR) {
        return true;
    }
    let ident = Regex::new(r"\b[a-z_]\w*\b").expect("regex");
    let vars: Vec<&str> = ident.find_iter(args).map(|m| m.as_str()).collect();
    vars.into_iter().any(|v| {
        let binding =
            Regex::new(&format!(r"let\s+(?:mut\s+)?{v}\s*(?::[^=]*)?=([^;]*);")).expect("regex");
        let found = binding
            .captures_iter(function)
            .any(|c| c[1].contains(SELECTOR));
        found
    })
}

/// Methods of `Api` that make no request.
const LOCAL_METHODS: &[&str] = &["clone", "resource_url", "into_client", "namespace"];

/// Scans one crate's `src/` directory.
pub fn scan_crate(src_dir: &Path) -> anyhow::Result<Vec<Call>> {
    let mut files = Vec::new();
    collect(src_dir, &mut files)?;
    // File modules declared under #[cfg(test)] are excluded.
    let mut test_files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut sources = Vec::new();
    for f in &files {
        let raw = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let (src, test_mods) = strip_test_modules(&strip_comments(&raw));
        let dir = if f
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs")
        {
            f.parent().expect("parent").to_path_buf()
        } else {
            f.with_extension("")
        };
        for m in test_mods {
            test_files.insert(dir.join(format!("{m}.rs")));
            test_files.insert(dir.join(&m).join("mod.rs"));
        }
        sources.push((f.clone(), src));
    }
    let mut calls = Vec::new();
    for (path, src) in &sources {
        if test_files.contains(path) {
            continue;
        }
        let rel = path
            .strip_prefix(src_dir.parent().and_then(Path::parent).unwrap_or(src_dir))
            .unwrap_or(path)
            .display()
            .to_string();
        scan_file(&rel, src, &mut calls)?;
    }
    calls.sort();
    calls.dedup_by(|a, b| {
        a.kind == b.kind
            && a.verb == b.verb
            && a.subresource == b.subresource
            && a.scope == b.scope
            && a.at == b.at
            && a.by_name == b.by_name
    });
    Ok(calls)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The patterns the scan reads `Api` values by.
struct Patterns {
    /// Any `Api` constructor.
    ctor: Regex,
    /// `let x: Api<K> = Api::ctor(`.
    typed_let: Regex,
    /// `let x = Api::<K>::ctor(`.
    turbo_let: Regex,
    /// A parameter `x: &Api<K>`.
    param: Regex,
}

impl Patterns {
    fn new() -> Patterns {
        let re = |p: &str| Regex::new(p).expect("regex");
        Patterns {
            ctor: re(r"Api(?:::<\s*(\w+)\s*>)?::(all|namespaced|namespaced_with|all_with)\s*\("),
            typed_let: re(r"let\s+(?:mut\s+)?(\w+)\s*:\s*Api<\s*(\w+)\s*>\s*=\s*Api::(\w+)\s*\("),
            turbo_let: re(r"let\s+(?:mut\s+)?(\w+)\s*=\s*Api::<\s*(\w+)\s*>::(\w+)\s*\("),
            param: re(r"(\w+)\s*:\s*&?\s*Api<\s*(\w+)\s*>"),
        }
    }

    /// The `Api` values `f` binds with `let`, in the order written: variable, kind, scope and
    /// where in `f` the binding starts.
    fn lets(&self, f: &Function<'_>) -> Vec<(String, String, Scope, usize)> {
        let mut out = Vec::new();
        for re in [&self.typed_let, &self.turbo_let] {
            for c in re.captures_iter(f.text) {
                let whole = c.get(0).expect("m");
                let args = args_of(paren_text(f.text, whole.end() - 1));
                let ns = args.get(1).cloned().unwrap_or_default();
                out.push((
                    c[1].to_string(),
                    c[2].to_string(),
                    scope_of(&c[3], &ns),
                    whole.start(),
                ));
            }
        }
        out
    }
}

/// An `Api` value of one function.
struct ApiValue {
    var: String,
    kind: String,
    /// Where its calls can land.
    scopes: Vec<Scope>,
    /// Where it is bound (or its function starts, for a parameter), in the file.
    at: usize,
}

/// A call found on an `Api` value: its verbs, subresource, place in the file, and whether it
/// selects by name.
type Found = (Vec<&'static str>, Option<&'static str>, usize, bool);

fn scan_file(rel: &str, src: &str, calls: &mut Vec<Call>) -> anyhow::Result<()> {
    refuse_unknown(rel, src)?;
    recorder_calls(rel, src, calls);
    let patterns = Patterns::new();
    every_ctor_bound(rel, src, &patterns)?;
    let fns = functions(src);
    // Per kind, the scopes an Api of that kind can have in this file.
    let file_scopes: Vec<(String, Scope)> = fns
        .iter()
        .flat_map(|f| patterns.lets(f))
        .map(|(_, kind, scope, _)| (kind, scope))
        .collect();
    let param_kinds = param_kinds(&fns, &patterns);
    for f in &fns {
        for value in api_values(rel, src, f, &patterns, &file_scopes)? {
            let kinds = kinds_of(rel, src, f, &value)?;
            let found = calls_on(rel, src, f, &value)?;
            // Handed to a function of this file that takes an `Api<K>` (its calls count there).
            let handed = Regex::new(&format!(
                r"\w+\s*\(\s*&?{}\s*[,)]",
                regex::escape(&value.var)
            ))
            .expect("regex")
            .is_match(f.text)
                && param_kinds.contains(&value.kind);
            if found.is_empty() && !handed {
                bail!(
                    "{rel}:{}: Api<{}> `{}` has no call the RBAC scanner recognises (passed on to another function?)",
                    line_of(src, value.at),
                    value.kind,
                    value.var
                );
            }
            push_calls(rel, src, &kinds, &value.scopes, found, calls);
        }
    }
    Ok(())
}

/// Fails on the constructs the scan does not follow.
fn refuse_unknown(rel: &str, src: &str) -> anyhow::Result<()> {
    for bad in [
        "Controller::new",
        "metadata_watcher",
        "reflector(",
        "Api::default_namespaced",
        "client.request",
        ".request::<",
    ] {
        if let Some(pos) = src.find(bad) {
            bail!(
                "{rel}:{}: `{bad}` is not understood by the RBAC scanner (tests/src/apicalls.rs): extend it",
                line_of(src, pos)
            );
        }
    }
    Ok(())
}

/// kube's event recorder: it creates and patches `events.k8s.io` Events.
fn recorder_calls(rel: &str, src: &str, calls: &mut Vec<Call>) {
    let Some(pos) = src.find("Recorder::new(") else {
        return;
    };
    for verb in ["create", "patch"] {
        calls.push(Call {
            kind: "events.k8s.io/Event".into(),
            verb: verb.into(),
            subresource: None,
            scope: Scope::AnyNamespace,
            at: format!("{rel}:{}", line_of(src, pos)),
            by_name: false,
        });
    }
}

/// Fails unless every `Api` constructor of the file is bound by a `let` the scan reads.
fn every_ctor_bound(rel: &str, src: &str, patterns: &Patterns) -> anyhow::Result<()> {
    let all = patterns.ctor.find_iter(src).count();
    let bound =
        patterns.typed_let.find_iter(src).count() + patterns.turbo_let.find_iter(src).count();
    if all != bound {
        let pos = patterns.ctor.find(src).map(|m| m.start()).unwrap_or(0);
        bail!(
            "{rel}:{}: an Api is constructed without a `let x: Api<K> = …` binding; the RBAC scanner (tests/src/apicalls.rs) cannot follow it",
            line_of(src, pos)
        );
    }
    Ok(())
}

/// Kinds taken as `Api<K>` parameters by some function of the file.
fn param_kinds(fns: &[Function<'_>], patterns: &Patterns) -> Vec<String> {
    fns.iter()
        .flat_map(|f| {
            patterns
                .param
                .captures_iter(f.signature())
                .map(|c| c[2].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `Api` values of `f`: those it binds, then those it takes as parameters (with the
/// scopes the file's constructors of their kind give).
fn api_values(
    rel: &str,
    src: &str,
    f: &Function<'_>,
    patterns: &Patterns,
    file_scopes: &[(String, Scope)],
) -> anyhow::Result<Vec<ApiValue>> {
    let mut values: Vec<ApiValue> = patterns
        .lets(f)
        .into_iter()
        .map(|(var, kind, scope, at)| ApiValue {
            var,
            kind,
            scopes: vec![scope],
            at: f.start + at,
        })
        .collect();
    for c in patterns.param.captures_iter(f.signature()) {
        let kind = c[2].to_string();
        let scopes: Vec<Scope> = file_scopes
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| *s)
            .collect();
        if scopes.is_empty() {
            bail!(
                "{rel}:{}: `{}: Api<{kind}>` is a parameter but no Api<{kind}> is built in this file; the RBAC scanner cannot tell its scope",
                line_of(src, f.start),
                &c[1]
            );
        }
        values.push(ApiValue {
            var: c[1].to_string(),
            kind,
            scopes,
            at: f.start,
        });
    }
    Ok(values)
}

/// The kinds `value` stands for: a generic parameter's concrete types (from the turbofish
/// calls of its function in the file), every custom resource of the project's group for a
/// dynamic object, else its own kind.
fn kinds_of(
    rel: &str,
    src: &str,
    f: &Function<'_>,
    value: &ApiValue,
) -> anyhow::Result<Vec<String>> {
    let kind = &value.kind;
    if let Some(index) = f.generics.iter().position(|g| g == kind) {
        // The type argument in `kind`'s position of each `name::<…>(` call.
        let re = Regex::new(&format!(r"\b{}::<([^>]*)>", regex::escape(&f.name))).expect("regex");
        let found: Vec<String> = re
            .captures_iter(src)
            .filter_map(|c| {
                let arg = c[1].split(',').nth(index)?.trim().to_string();
                (!arg.is_empty() && arg != "_").then_some(arg)
            })
            .collect();
        if found.is_empty() {
            bail!(
                "{rel}:{}: generic Api<{kind}> in fn {} is never called with a concrete type in this file",
                line_of(src, value.at),
                f.name
            );
        }
        return Ok(found);
    }
    if kind == "DynamicObject" {
        if !f.text.contains("ApiResource") || !f.text.contains("GROUP") {
            bail!(
                "{rel}:{}: Api<DynamicObject> without an ApiResource of the project's GROUP",
                line_of(src, value.at)
            );
        }
        return Ok(vec!["DynamicObject:GROUP".into()]);
    }
    Ok(vec![kind.clone()])
}

/// The kube calls `f` makes on `value`: its methods, then the watchers over it.
fn calls_on(
    rel: &str,
    src: &str,
    f: &Function<'_>,
    value: &ApiValue,
) -> anyhow::Result<Vec<Found>> {
    let var = regex::escape(&value.var);
    let method = Regex::new(&format!(r"\b{var}\s*\.\s*(\w+)\s*\(")).expect("regex");
    let mut found = Vec::new();
    for c in method.captures_iter(f.text) {
        let m = c.get(0).expect("m");
        let name = &c[1];
        if LOCAL_METHODS.contains(&name) {
            continue;
        }
        let args = paren_text(f.text, m.end() - 1);
        let Some((verbs, sub)) = verbs_of(name, args) else {
            bail!(
                "{rel}:{}: `{}.{name}(…)` on an Api<{}> is not known to the RBAC scanner (tests/src/apicalls.rs)",
                line_of(src, f.start + m.start()),
                value.var,
                value.kind
            );
        };
        let by_name = name == "list" && selects_by_name(f.text, args);
        found.push((verbs, sub, f.start + m.start(), by_name));
    }
    let watcher = Regex::new(&format!(r"\bwatcher\s*\(\s*{var}\b")).expect("regex");
    for m in watcher.find_iter(f.text) {
        let open = f.text[..m.end()].rfind('(').expect("watcher(");
        let by_name = selects_by_name(f.text, paren_text(f.text, open));
        found.push((vec!["list", "watch"], None, f.start + m.start(), by_name));
    }
    Ok(found)
}

/// One [`Call`] per kind, verb and scope of each call found.
fn push_calls(
    rel: &str,
    src: &str,
    kinds: &[String],
    scopes: &[Scope],
    found: Vec<Found>,
    calls: &mut Vec<Call>,
) {
    for (verbs, sub, at, by_name) in found {
        for k in kinds {
            for v in &verbs {
                for s in scopes {
                    calls.push(Call {
                        kind: k.clone(),
                        verb: (*v).to_string(),
                        subresource: sub.map(str::to_string),
                        scope: *s,
                        at: format!("{rel}:{}", line_of(src, at)),
                        by_name,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found = (String, String, Option<String>, Scope);

    fn scan(src: &str) -> anyhow::Result<Vec<Found>> {
        let mut calls = Vec::new();
        scan_file(
            "x.rs",
            &strip_test_modules(&strip_comments(src)).0,
            &mut calls,
        )?;
        let mut v: Vec<_> = calls
            .into_iter()
            .map(|c| (c.kind, c.verb, c.subresource, c.scope))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    #[test]
    fn finds_bound_apis_generics_params_and_scopes() {
        let src = r#"
fn watch<K>(client: &Client) -> S {
    let api: Api<K> = Api::all(client.clone());
    watcher(api, Config::default())
}
fn all(c: &Client) { watch::<Site>(c); watch::<Secret>(c); watch2::<SipDevice, _>(c, f); }
fn watch2<K, R>(client: &Client, convert: fn(K) -> R) -> S {
    let api: Api<K> = Api::all(client.clone());
    watcher(api, Config::default())
}
async fn round(api: &Api<Lease>) { api.get_opt("x").await; api.replace("x", &pp, &l).await; }
async fn run(client: Client, settings: Settings) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    round(&api).await;
}
async fn creds(w: W, client: Client) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &w.owner.namespace);
    // api.delete("commented out", &dp)
    api.patch(&name, &pp, &Patch::Apply(&w.secret)).await;
}
#[cfg(test)]
mod tests { fn t() { let api: Api<Pod> = Api::all(c); api.delete("x"); } }
"#;
        let got = scan(src).unwrap();
        let has = |k: &str, v: &str, s: Scope| got.iter().any(|c| c.0 == k && c.1 == v && c.3 == s);
        assert!(has("Site", "watch", Scope::Cluster), "{got:?}");
        assert!(has("Secret", "list", Scope::Cluster));
        assert!(
            has("SipDevice", "watch", Scope::Cluster),
            "second generic form"
        );
        assert!(has("Lease", "get", Scope::OwnNamespace));
        assert!(has("Lease", "update", Scope::OwnNamespace));
        assert!(has("Secret", "patch", Scope::AnyNamespace));
        assert!(has("Secret", "create", Scope::AnyNamespace));
        assert!(
            !got.iter().any(|c| c.1 == "delete"),
            "comments and test modules are skipped"
        );
        assert!(!got.iter().any(|c| c.0 == "Pod"));
    }

    #[test]
    fn lists_and_watches_by_name_are_told_apart() {
        let src = r#"
async fn named(client: Client, namespace: String) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    for name in names() {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher(api.clone(), config);
    }
    let lp = ListParams::default().fields("metadata.name=x");
    api.list(&lp).await;
}
async fn labelled(client: Client, namespace: String) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels("a=b");
    watcher(api, config);
    api.list(&ListParams::default().fields("metadata.namespace=x")).await;
}
"#;
        let mut calls = Vec::new();
        scan_file("x.rs", &strip_comments(src), &mut calls).unwrap();
        let named: Vec<_> = calls.iter().filter(|c| c.by_name).collect();
        assert_eq!(named.len(), 3, "{calls:#?}");
        assert!(named.iter().all(|c| c.at == "x.rs:6" || c.at == "x.rs:9"));
        assert_eq!(calls.iter().filter(|c| !c.by_name).count(), 3, "{calls:#?}");
    }

    #[test]
    fn refuses_what_it_cannot_follow() {
        let unknown = "fn f(c: Client) { let api: Api<Pod> = Api::all(c); api.evict(\"x\"); }";
        assert!(scan(unknown).unwrap_err().to_string().contains("evict"));
        let unbound = "fn f(c: Client) { Api::<Pod>::all(c).list(&lp); }";
        assert!(scan(unbound).is_err());
        let unused = "fn f(c: Client) { let api: Api<Pod> = Api::all(c); g(api); }";
        assert!(scan(unused).is_err());
        let controller = "fn f() { Controller::new(api, cfg); }";
        assert!(scan(controller).is_err());
    }

    #[test]
    fn dynamic_objects_and_recorder() {
        let src = r#"
async fn w(client: &Client, update: &Update) {
    let ar = ApiResource { group: GROUP.into(), plural: update.plural.into() };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &update.key.namespace, &ar);
    api.patch_status(&n, &pp, &Patch::Apply(&b)).await;
    let r = Recorder::new(client.clone(), rep);
}
"#;
        let got = scan(src).unwrap();
        assert!(got.contains(&(
            "DynamicObject:GROUP".into(),
            "patch".into(),
            Some("status".into()),
            Scope::AnyNamespace
        )));
        assert!(got
            .iter()
            .any(|c| c.0 == "events.k8s.io/Event" && c.1 == "create"));
    }
}
