//! A small renderer for the subset of Go templates (with Helm's functions) that
//! `charts/switchboard` uses, so the chart's templates are rendered and checked on machines
//! without `helm`.
//!
//! What it covers:
//! - text and actions, `{{-` / `-}}` whitespace trimming, `{{/* comments */}}`;
//! - `if` / `else if` / `else` / `end`, `with` (and its `else`), `range` over lists and maps
//!   (with `$i, $v :=` or `$v :=`), `define` and Helm's `include`;
//! - variables (`$x := …`, `$x = …`, `$`), fields on `.`, on `$` and on variables, parentheses,
//!   pipelines (`a | f b` calls `f b a`);
//! - the functions `default`, `trunc`, `trimSuffix`, `printf` (`%s`, `%v`, `%d`, `%%`),
//!   `contains`, `replace`, `quote`, `toYaml`, `indent`, `nindent`, `include`, `eq`, `ne`,
//!   `gt`, `lt`, `not`, `and`, `or`, `empty`, `int`, `required`, `until`.
//!
//! - `.Files.Get "path"` (or `$.Files.Get`), from the root's `Files` map of path to content,
//!   as Helm reads the chart's files (a missing file gives an empty string, as in Helm).
//!
//! What it does not: any other function or keyword (it fails, naming it, rather than guess),
//! `template`/`block`, other method calls, `.Capabilities`, `lookup`, subcharts. Semantics follow
//! Go's `text/template` and Helm: empty values are falsy, a missing key gives nothing, a field
//! of a missing value is an error (Helm's "nil pointer evaluating").

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// A rendering or parsing failure, with the template's name.
#[derive(Debug, thiserror::Error)]
#[error("{template}: {message}")]
pub struct Error {
    /// Template (file or define) name.
    pub template: String,
    /// What went wrong.
    pub message: String,
}

fn err<T>(template: &str, message: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        template: template.to_string(),
        message: message.into(),
    })
}

#[derive(Clone, Debug)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    Ident(String),
    Sub(Pipe),
}

type Cmd = Vec<Arg>;

#[derive(Clone, Debug)]
struct Pipe {
    decl: Option<(Vec<String>, bool)>,
    cmds: Vec<Cmd>,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Out(Pipe),
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug)]
enum Tok {
    Text(String),
    Action(String),
}

/// Splits a source into text and action bodies, applying `{{-` and `-}}` trimming.
fn lex(name: &str, src: &str) -> Result<Vec<Tok>, Error> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        out.push(Tok::Text(text.to_string()));
        let body_start = if trim_left { 1 } else { 0 };
        let end = find_close(&after[body_start..]).ok_or_else(|| Error {
            template: name.into(),
            message: "unclosed action".into(),
        })? + body_start;
        let mut body = &after[body_start..end];
        trim_next = body.ends_with(" -") || body.ends_with("\n-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            out.push(Tok::Action(body.to_string()));
        }
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    out.push(Tok::Text(text.to_string()));
    Ok(out)
}

/// Index of the `}}` closing an action, skipping quoted strings and comments.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
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
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..].find("*/")?;
                i += end + 3;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
enum ETok {
    LParen,
    RParen,
    Pipe,
    Decl,
    Assign,
    Comma,
    Str(String),
    Int(i64),
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
}

fn fields(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn lex_expr(name: &str, s: &str) -> Result<Vec<ETok>, Error> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        if let Some((tok, len)) = punctuation(&c[i..]) {
            out.push(tok);
            i += len;
            continue;
        }
        match c[i] {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '"' => out.push(ETok::Str(quoted(name, &c, &mut i)?)),
            '`' => out.push(ETok::Str(raw(&c, &mut i))),
            '.' => out.push(ETok::Dot(fields(&word(&c, &mut i)))),
            '$' => {
                let w = word(&c, &mut i);
                let mut parts = w.splitn(2, '.');
                let var = parts.next().unwrap_or("$").to_string();
                out.push(ETok::Var(var, fields(parts.next().unwrap_or(""))));
            }
            d if d.is_ascii_digit()
                || (d == '-' && c.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                out.push(ETok::Int(number(name, &c, &mut i)?));
            }
            a if a.is_alphabetic() => out.push(ETok::Ident(word(&c, &mut i))),
            other => return err(name, format!("unexpected character {other:?} in {s:?}")),
        }
    }
    Ok(out)
}

/// The punctuation token `c` starts with, and its length in characters.
fn punctuation(c: &[char]) -> Option<(ETok, usize)> {
    Some(match c {
        ['(', ..] => (ETok::LParen, 1),
        [')', ..] => (ETok::RParen, 1),
        ['|', ..] => (ETok::Pipe, 1),
        [',', ..] => (ETok::Comma, 1),
        [':', '=', ..] => (ETok::Decl, 2),
        ['=', ..] => (ETok::Assign, 1),
        _ => return None,
    })
}

/// The word (letters, digits, `_`, `.`, `$`) at `*i`, moving `*i` past it.
fn word(c: &[char], i: &mut usize) -> String {
    let start = *i;
    while *i < c.len() && (c[*i].is_alphanumeric() || "_.$".contains(c[*i])) {
        *i += 1;
    }
    c[start..*i].iter().collect()
}

/// The double-quoted string at `*i` (its escapes undone), moving `*i` past its closing quote.
fn quoted(name: &str, c: &[char], i: &mut usize) -> Result<String, Error> {
    let mut v = String::new();
    *i += 1;
    while *i < c.len() && c[*i] != '"' {
        if c[*i] == '\\' {
            *i += 1;
            match c.get(*i) {
                Some('n') => v.push('\n'),
                Some('t') => v.push('\t'),
                Some(&x) => v.push(x),
                None => return err(name, "bad escape"),
            }
        } else {
            v.push(c[*i]);
        }
        *i += 1;
    }
    if *i >= c.len() {
        return err(name, "unterminated string");
    }
    *i += 1;
    Ok(v)
}

/// The back-quoted string at `*i`, as written, moving `*i` past its closing quote.
fn raw(c: &[char], i: &mut usize) -> String {
    let start = *i + 1;
    *i += 1;
    while *i < c.len() && c[*i] != '`' {
        *i += 1;
    }
    let text = c[start..*i].iter().collect();
    *i += 1;
    text
}

/// The integer (with an optional `-`) at `*i`, moving `*i` past it.
fn number(name: &str, c: &[char], i: &mut usize) -> Result<i64, Error> {
    let start = *i;
    *i += 1;
    while *i < c.len() && c[*i].is_ascii_digit() {
        *i += 1;
    }
    let n: String = c[start..*i].iter().collect();
    n.parse().map_err(|_| Error {
        template: name.into(),
        message: format!("bad number {n}"),
    })
}

fn parse_pipe(name: &str, toks: &[ETok], pos: &mut usize) -> Result<Pipe, Error> {
    let mut decl = None;
    // `$a := …`, `$a, $b := …`, `$a = …`
    let mut look = *pos;
    let mut vars = Vec::new();
    while let Some(ETok::Var(v, f)) = toks.get(look) {
        if !f.is_empty() {
            break;
        }
        vars.push(v.clone());
        look += 1;
        if toks.get(look) == Some(&ETok::Comma) {
            look += 1;
        } else {
            break;
        }
    }
    if !vars.is_empty() {
        match toks.get(look) {
            Some(ETok::Decl) => {
                decl = Some((vars, true));
                *pos = look + 1;
            }
            Some(ETok::Assign) => {
                decl = Some((vars, false));
                *pos = look + 1;
            }
            _ => {}
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while let Some(t) = toks.get(*pos) {
        *pos += 1;
        match t {
            ETok::RParen => {
                *pos -= 1;
                break;
            }
            ETok::Pipe => {
                if cmd.is_empty() {
                    return err(name, "empty command in pipeline");
                }
                cmds.push(std::mem::take(&mut cmd));
            }
            ETok::LParen => {
                let sub = parse_pipe(name, toks, pos)?;
                if toks.get(*pos) != Some(&ETok::RParen) {
                    return err(name, "missing )");
                }
                *pos += 1;
                cmd.push(Arg::Sub(sub));
            }
            ETok::Str(s) => cmd.push(Arg::Str(s.clone())),
            ETok::Int(n) => cmd.push(Arg::Int(*n)),
            ETok::Dot(f) => cmd.push(Arg::Field(f.clone())),
            ETok::Var(v, f) => cmd.push(Arg::Var(v.clone(), f.clone())),
            ETok::Ident(w) => cmd.push(match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Ident(w.clone()),
            }),
            ETok::Decl | ETok::Assign | ETok::Comma => {
                return err(name, format!("unexpected {t:?}"));
            }
        }
    }
    if cmd.is_empty() {
        return err(name, "empty pipeline");
    }
    cmds.push(cmd);
    Ok(Pipe { decl, cmds })
}

fn pipe_of(name: &str, s: &str) -> Result<Pipe, Error> {
    let toks = lex_expr(name, s)?;
    let mut pos = 0;
    let p = parse_pipe(name, &toks, &mut pos)?;
    if pos != toks.len() {
        return err(name, format!("trailing tokens in {s:?}"));
    }
    Ok(p)
}

/// What ended a block: `end`, or `else` (with an optional `else if` pipeline).
enum Stop {
    End,
    Else(Option<Pipe>),
    Eof,
}

struct Parser<'a> {
    name: &'a str,
    toks: Vec<Tok>,
    pos: usize,
    defines: &'a mut HashMap<String, Vec<Node>>,
}

impl Parser<'_> {
    fn block(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut nodes = Vec::new();
        while self.pos < self.toks.len() {
            let tok = std::mem::replace(&mut self.toks[self.pos], Tok::Text(String::new()));
            self.pos += 1;
            let body = match tok {
                Tok::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Tok::Action(a) => a,
            };
            let (kw, rest) = match body.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r.trim()),
                None => (body.as_str(), ""),
            };
            match kw {
                "end" => return Ok((nodes, Stop::End)),
                "else" => {
                    let p = if let Some(cond) = rest.strip_prefix("if ") {
                        Some(pipe_of(self.name, cond)?)
                    } else if rest.is_empty() {
                        None
                    } else {
                        return err(self.name, format!("unsupported `else {rest}`"));
                    };
                    return Ok((nodes, Stop::Else(p)));
                }
                "if" => {
                    let mut branches = vec![(pipe_of(self.name, rest)?, Vec::new())];
                    let mut otherwise = Vec::new();
                    loop {
                        let (body, stop) = self.block()?;
                        branches.last_mut().expect("a branch").1 = body;
                        match stop {
                            Stop::End => break,
                            Stop::Else(Some(p)) => branches.push((p, Vec::new())),
                            Stop::Else(None) => {
                                let (body, stop) = self.block()?;
                                otherwise = body;
                                self.expect_end(stop)?;
                                break;
                            }
                            Stop::Eof => return err(self.name, "`if` without `end`"),
                        }
                    }
                    nodes.push(Node::If(branches, otherwise));
                }
                "with" | "range" => {
                    let p = pipe_of(self.name, rest)?;
                    let (body, stop) = self.block()?;
                    let otherwise = match stop {
                        Stop::End => Vec::new(),
                        Stop::Else(None) => {
                            let (b, stop) = self.block()?;
                            self.expect_end(stop)?;
                            b
                        }
                        _ => return err(self.name, format!("bad `{kw}` block")),
                    };
                    nodes.push(if kw == "with" {
                        Node::With(p, body, otherwise)
                    } else {
                        Node::Range(p, body, otherwise)
                    });
                }
                "define" => {
                    let Some(ETok::Str(dname)) = lex_expr(self.name, rest)?.into_iter().next()
                    else {
                        return err(self.name, "define needs a name");
                    };
                    let (body, stop) = self.block()?;
                    self.expect_end(stop)?;
                    self.defines.insert(dname, body);
                }
                "template" | "block" | "break" | "continue" => {
                    return err(self.name, format!("`{kw}` is outside the supported subset"));
                }
                _ => nodes.push(Node::Out(pipe_of(self.name, &body)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn expect_end(&self, stop: Stop) -> Result<(), Error> {
        match stop {
            Stop::End => Ok(()),
            _ => err(self.name, "expected `end`"),
        }
    }
}

/// Parses a template source; its `define`s go into `defines`.
fn parse(
    name: &str,
    src: &str,
    defines: &mut HashMap<String, Vec<Node>>,
) -> Result<Vec<Node>, Error> {
    let toks = lex(name, src)?;
    let mut p = Parser {
        name,
        toks,
        pos: 0,
        defines,
    };
    let (nodes, stop) = p.block()?;
    match stop {
        Stop::Eof => Ok(nodes),
        _ => err(name, "unexpected `end` or `else`"),
    }
}

/// Go template truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn to_text(name: &str, v: &Value) -> Result<String, Error> {
    Ok(match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => {
            return err(
                name,
                "a list or map printed directly (Go would print map[...]); use toYaml",
            )
        }
    })
}

struct Scope<'a> {
    dot: Value,
    root: &'a Value,
    vars: Vec<HashMap<String, Value>>,
}

impl Scope<'_> {
    fn var(&self, name: &str, v: &str) -> Result<Value, Error> {
        if v == "$" {
            return Ok(self.root.clone());
        }
        for frame in self.vars.iter().rev() {
            if let Some(x) = frame.get(v) {
                return Ok(x.clone());
            }
        }
        err(name, format!("undefined variable {v}"))
    }
}

/// Whether a command calls Helm's `.Files.Get` (the one method call supported).
fn is_files_get(cmd: &Cmd) -> bool {
    let get = ["Files".to_string(), "Get".to_string()];
    match cmd.first() {
        Some(Arg::Field(f)) => *f == get,
        Some(Arg::Var(v, f)) => v == "$" && *f == get,
        _ => false,
    }
}

fn walk(name: &str, mut v: Value, path: &[String]) -> Result<Value, Error> {
    for (i, f) in path.iter().enumerate() {
        v = match v {
            Value::Object(mut m) => m.remove(f).unwrap_or(Value::Null),
            Value::Null => {
                return err(
                    name,
                    format!("nil pointer evaluating .{}", path[..=i].join(".")),
                )
            }
            _ => return err(name, format!("can't evaluate field {f} in a non-map")),
        };
    }
    Ok(v)
}

/// A chart's templates, parsed.
pub struct Templates {
    files: BTreeMap<String, Vec<Node>>,
    defines: HashMap<String, Vec<Node>>,
}

impl Templates {
    /// Parses every `(name, source)`; `define`s from any file are visible to all.
    pub fn parse<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Error> {
        let mut defines = HashMap::new();
        let mut files = BTreeMap::new();
        for (name, src) in sources {
            files.insert(name.to_string(), parse(name, src, &mut defines)?);
        }
        Ok(Templates { files, defines })
    }

    /// Names of the parsed files.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Renders one file against `root` (the object with `Values`, `Release`, `Chart`).
    pub fn render(&self, file: &str, root: &Value) -> Result<String, Error> {
        let nodes = self.files.get(file).ok_or_else(|| Error {
            template: file.into(),
            message: "no such template".into(),
        })?;
        let mut scope = Scope {
            dot: root.clone(),
            root,
            vars: vec![HashMap::new()],
        };
        let mut out = String::new();
        self.exec(file, nodes, &mut scope, &mut out)?;
        Ok(out)
    }

    fn exec(
        &self,
        name: &str,
        nodes: &[Node],
        sc: &mut Scope,
        out: &mut String,
    ) -> Result<(), Error> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Out(p) => {
                    let v = self.eval_pipe(name, p, sc)?;
                    if p.decl.is_none() {
                        out.push_str(&to_text(name, &v)?);
                    }
                }
                Node::If(branches, otherwise) => {
                    let mut done = false;
                    for (cond, body) in branches {
                        if truthy(&self.eval_pipe(name, cond, sc)?) {
                            self.nested(name, body, sc, None, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nested(name, otherwise, sc, None, out)?;
                    }
                }
                Node::With(p, body, otherwise) => {
                    let v = self.eval_pipe(name, p, sc)?;
                    if truthy(&v) {
                        self.nested(name, body, sc, Some(v), out)?;
                    } else {
                        self.nested(name, otherwise, sc, None, out)?;
                    }
                }
                Node::Range(p, body, otherwise) => {
                    let mut inner = p.clone();
                    let decl = inner.decl.take();
                    let v = self.eval_pipe(name, &inner, sc)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::from(i), x))
                            .collect(),
                        Value::Object(m) => {
                            m.into_iter().map(|(k, x)| (Value::String(k), x)).collect()
                        }
                        Value::Null => Vec::new(),
                        _ => return err(name, "range over a non-list"),
                    };
                    if items.is_empty() {
                        self.nested(name, otherwise, sc, None, out)?;
                    }
                    for (k, x) in items {
                        sc.vars.push(HashMap::new());
                        if let Some((vars, _)) = &decl {
                            match vars.as_slice() {
                                [v] => {
                                    sc.vars
                                        .last_mut()
                                        .expect("frame")
                                        .insert(v.clone(), x.clone());
                                }
                                [i, v] => {
                                    let f = sc.vars.last_mut().expect("frame");
                                    f.insert(i.clone(), k);
                                    f.insert(v.clone(), x.clone());
                                }
                                _ => return err(name, "range declares one or two variables"),
                            }
                        }
                        let saved = std::mem::replace(&mut sc.dot, x);
                        let r = self.exec(name, body, sc, out);
                        sc.dot = saved;
                        sc.vars.pop();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn nested(
        &self,
        name: &str,
        body: &[Node],
        sc: &mut Scope,
        dot: Option<Value>,
        out: &mut String,
    ) -> Result<(), Error> {
        sc.vars.push(HashMap::new());
        let saved = dot.map(|d| std::mem::replace(&mut sc.dot, d));
        let r = self.exec(name, body, sc, out);
        if let Some(s) = saved {
            sc.dot = s;
        }
        sc.vars.pop();
        r
    }

    fn eval_pipe(&self, name: &str, p: &Pipe, sc: &mut Scope) -> Result<Value, Error> {
        let mut piped: Option<Value> = None;
        for cmd in &p.cmds {
            piped = Some(self.eval_cmd(name, cmd, piped, sc)?);
        }
        let v = piped.unwrap_or(Value::Null);
        if let Some((vars, declare)) = &p.decl {
            let [var] = vars.as_slice() else {
                return err(name, "only `range` declares two variables");
            };
            if *declare {
                sc.vars
                    .last_mut()
                    .expect("frame")
                    .insert(var.clone(), v.clone());
            } else {
                let frame = sc
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|f| f.contains_key(var))
                    .ok_or_else(|| Error {
                        template: name.into(),
                        message: format!("assignment to undeclared {var}"),
                    })?;
                frame.insert(var.clone(), v.clone());
            }
        }
        Ok(v)
    }

    fn eval_arg(&self, name: &str, a: &Arg, sc: &mut Scope) -> Result<Value, Error> {
        Ok(match a {
            Arg::Field(f) => walk(name, sc.dot.clone(), f)?,
            Arg::Var(v, f) => walk(name, sc.var(name, v)?, f)?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(n) => Value::from(*n),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Sub(p) => self.eval_pipe(name, p, sc)?,
            Arg::Ident(f) => self.call(name, f, Vec::new())?,
        })
    }

    fn eval_cmd(
        &self,
        name: &str,
        cmd: &Cmd,
        piped: Option<Value>,
        sc: &mut Scope,
    ) -> Result<Value, Error> {
        if let Some(Arg::Ident(f)) = cmd.first() {
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.eval_arg(name, a, sc)?);
            }
            args.extend(piped);
            return self.call(name, f, args);
        }
        if is_files_get(cmd) {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.eval_arg(name, a, sc)?);
            }
            args.extend(piped);
            let [Value::String(path)] = args.as_slice() else {
                return err(name, ".Files.Get takes one path");
            };
            let file = sc.root.get("Files").and_then(|f| f.get(path.as_str()));
            return Ok(file
                .cloned()
                .unwrap_or_else(|| Value::String(String::new())));
        }
        if cmd.len() != 1 || piped.is_some() {
            return err(name, "a value cannot take arguments");
        }
        self.eval_arg(name, &cmd[0], sc)
    }

    /// Calls the template function `f` of the supported subset with `args`.
    fn call(&self, name: &str, f: &str, args: Vec<Value>) -> Result<Value, Error> {
        let args = Args {
            template: name,
            function: f,
            values: args,
        };
        match f {
            "include" => self.include(&args),
            _ => logic(&args),
        }
    }

    /// `include NAME DOT`: the named template rendered with `DOT`.
    fn include(&self, args: &Args<'_>) -> Result<Value, Error> {
        args.arity(2)?;
        let name = args.template;
        let Value::String(dname) = &args.values[0] else {
            return err(name, "include needs a template name");
        };
        let body = self.defines.get(dname).ok_or_else(|| Error {
            template: name.into(),
            message: format!("no template {dname:?}"),
        })?;
        let mut sc = Scope {
            dot: args.values[1].clone(),
            root: &args.values[1],
            vars: vec![HashMap::new()],
        };
        let mut out = String::new();
        self.exec(dname, body, &mut sc, &mut out)?;
        Ok(Value::String(out))
    }
}

/// A template function's arguments, with the checks the functions share.
struct Args<'a> {
    /// The template calling it (for errors).
    template: &'a str,
    function: &'a str,
    values: Vec<Value>,
}

impl Args<'_> {
    /// Fails unless there are exactly `want` arguments.
    fn arity(&self, want: usize) -> Result<(), Error> {
        let n = self.values.len();
        if n == want {
            Ok(())
        } else {
            err(
                self.template,
                format!("{} takes {want} arguments, got {n}", self.function),
            )
        }
    }

    /// Fails unless there are at least two arguments.
    fn at_least_two(&self) -> Result<(), Error> {
        if self.values.len() < 2 {
            return err(
                self.template,
                format!("{} needs two arguments", self.function),
            );
        }
        Ok(())
    }

    /// Argument `i` as text.
    fn text(&self, i: usize) -> Result<String, Error> {
        to_text(self.template, &self.values[i])
    }

    /// Argument `i` as an integer, converted as loosely as Go's templates do.
    fn int(&self, i: usize) -> Result<i64, Error> {
        match &self.values[i] {
            Value::Number(x) => Ok(x.as_i64().unwrap_or(x.as_f64().unwrap_or(0.0) as i64)),
            Value::String(x) => Ok(x.parse().unwrap_or(0)),
            Value::Bool(b) => Ok(i64::from(*b)),
            Value::Null => Ok(0),
            _ => err(self.template, format!("{}: not a number", self.function)),
        }
    }
}

/// The functions on values, comparisons and truth; any other goes on to [`text`].
fn logic(args: &Args<'_>) -> Result<Value, Error> {
    let v = &args.values;
    Ok(match args.function {
        "default" => {
            args.arity(2)?;
            if truthy(&v[1]) {
                v[1].clone()
            } else {
                v[0].clone()
            }
        }
        "empty" | "not" => {
            args.arity(1)?;
            Value::Bool(!truthy(&v[0]))
        }
        "fail" => {
            args.arity(1)?;
            return err(args.template, args.text(0)?);
        }
        "required" => {
            args.arity(2)?;
            if !truthy(&v[1]) {
                return err(args.template, args.text(0)?);
            }
            v[1].clone()
        }
        "eq" => {
            args.at_least_two()?;
            Value::Bool(v[1..].iter().any(|b| loose_eq(&v[0], b)))
        }
        "ne" => {
            args.arity(2)?;
            Value::Bool(!loose_eq(&v[0], &v[1]))
        }
        "gt" | "lt" => {
            args.arity(2)?;
            let (a, b) = (args.int(0)?, args.int(1)?);
            Value::Bool(if args.function == "gt" { a > b } else { a < b })
        }
        "int" => {
            args.arity(1)?;
            Value::from(args.int(0)?)
        }
        "until" => {
            args.arity(1)?;
            Value::Array((0..args.int(0)?.max(0)).map(Value::from).collect())
        }
        // `and` gives the first false argument, `or` the first true one, else the last.
        "and" | "or" => {
            args.at_least_two()?;
            let want = args.function == "or";
            v.iter()
                .find(|a| truthy(a) == want)
                .unwrap_or(&v[v.len() - 1])
                .clone()
        }
        _ => return text(args),
    })
}

/// The functions on text, and the failure for a function outside the subset.
fn text(args: &Args<'_>) -> Result<Value, Error> {
    let name = args.template;
    Ok(Value::String(match args.function {
        "trunc" => {
            args.arity(2)?;
            let k = args.int(0)?.max(0) as usize;
            args.text(1)?.chars().take(k).collect()
        }
        "trimSuffix" => {
            args.arity(2)?;
            let (suffix, v) = (args.text(0)?, args.text(1)?);
            v.strip_suffix(suffix.as_str()).unwrap_or(&v).to_string()
        }
        "contains" => {
            args.arity(2)?;
            return Ok(Value::Bool(args.text(1)?.contains(&args.text(0)?)));
        }
        "replace" => {
            args.arity(3)?;
            args.text(2)?.replace(&args.text(0)?, &args.text(1)?)
        }
        "quote" => {
            let parts: Result<Vec<String>, Error> = args
                .values
                .iter()
                .filter(|a| !a.is_null())
                .map(|a| {
                    Ok(serde_json::to_string(&Value::String(to_text(name, a)?)).expect("string"))
                })
                .collect();
            parts?.join(" ")
        }
        "printf" => printf(args)?,
        "toYaml" => {
            args.arity(1)?;
            let y = serde_yaml::to_string(&args.values[0]).map_err(|e| Error {
                template: name.into(),
                message: e.to_string(),
            })?;
            y.trim_end_matches('\n').to_string()
        }
        "indent" | "nindent" => {
            args.arity(2)?;
            let pad = " ".repeat(args.int(0)?.max(0) as usize);
            let body = format!("{pad}{}", args.text(1)?.replace('\n', &format!("\n{pad}")));
            if args.function == "nindent" {
                format!("\n{body}")
            } else {
                body
            }
        }
        other => {
            return err(
                name,
                format!("function {other:?} is outside the supported subset"),
            )
        }
    }))
}

/// `printf` with the verbs charts use here: `%s`, `%v`, `%d` (each as text) and `%%`.
fn printf(args: &Args<'_>) -> Result<String, Error> {
    let name = args.template;
    let Some(Value::String(fmt)) = args.values.first() else {
        return err(name, "printf needs a format string");
    };
    let mut rest = args.values[1..].iter();
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s' | 'v' | 'd') => match rest.next() {
                Some(a) => out.push_str(&to_text(name, a)?),
                None => return err(name, "printf: too few arguments"),
            },
            other => return err(name, format!("printf verb %{other:?} unsupported")),
        }
    }
    Ok(out)
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Helm's top-level object: `.Values`, `.Release`, `.Chart` (from Chart.yaml, keys capitalised
/// as Helm does).
pub fn root(values: Value, release: &str, namespace: &str, chart: &Value) -> Value {
    let mut c = Map::new();
    if let Value::Object(m) = chart {
        for (k, v) in m {
            let mut key = k.clone();
            if let Some(first) = key.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            c.insert(key, v.clone());
        }
    }
    serde_json::json!({
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
        "Chart": Value::Object(c),
    })
}

/// Deep-merges `overlay` into `base` (maps merge, anything else replaces), as `helm --set`/`-f`.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, values: Value) -> Result<String, Error> {
        let t = Templates::parse([("t", src)])?;
        t.render(
            "t",
            &root(values, "rel", "ns", &json!({"name": "c", "version": "1.0"})),
        )
    }

    #[test]
    fn files_get_reads_the_chart_files_verbatim() {
        let t = Templates::parse([(
            "t",
            r#"{{ .Files.Get "files/a.json" | nindent 2 }}|{{ with .Values }}{{ $.Files.Get "none" }}{{ end }}"#,
        )])
        .unwrap();
        let mut r = root(json!({"x": 1}), "rel", "ns", &json!({"name": "c"}));
        r["Files"] = json!({"files/a.json": "{\"legend\": \"{{site}}\"}"});
        assert_eq!(
            t.render("t", &r).unwrap(),
            "\n  {\"legend\": \"{{site}}\"}|"
        );
    }

    #[test]
    fn fields_trimming_and_pipelines() {
        let out = render(
            "a: {{ .Values.x | quote }}\n{{- if .Values.y }}\nb: {{ .Values.y }}\n{{- end }}\nc: {{ .Chart.Name }}-{{ .Release.Namespace }}",
            json!({"x": "hi", "y": 3}),
        )
        .unwrap();
        assert_eq!(out, "a: \"hi\"\nb: 3\nc: c-ns");
    }

    #[test]
    fn else_if_with_range_and_variables() {
        let src = "{{- $n := default \"d\" .Values.n -}}\n{{ if eq .Values.k \"a\" }}A{{ else if eq .Values.k \"b\" }}B{{ else }}C{{ end }}\n{{- with .Values.m }} m={{ .z }}{{ end }}\n{{- range $i, $v := .Values.l }} {{ $i }}:{{ $v }}/{{ $n }}{{ end }}";
        let out = render(src, json!({"k": "b", "m": {"z": 1}, "l": ["p", "q"]})).unwrap();
        assert_eq!(out, "B m=1 0:p/d 1:q/d");
    }

    #[test]
    fn include_and_nindent_and_toyaml() {
        let src = "{{- define \"l\" -}}\na: {{ .Values.a }}\n{{- end -}}\nx:\n  {{- include \"l\" . | nindent 2 }}\n  {{- toYaml .Values.m | nindent 2 }}";
        let out = render(src, json!({"a": 1, "m": {"k": "v", "j": [1]}})).unwrap();
        assert_eq!(out, "x:\n  a: 1\n  j:\n  - 1\n  k: v");
    }

    #[test]
    fn printf_trunc_trim_and_logic() {
        let out = render(
            "{{ printf \"%s-%v\" \"ab\" 5 | trunc 3 | trimSuffix \"-\" }} {{ and .Values.t (not .Values.f) }} {{ or .Values.f \"z\" }} {{ contains \"b\" \"abc\" }}",
            json!({"t": true, "f": false}),
        )
        .unwrap();
        assert_eq!(out, "ab true z true");
    }

    #[test]
    fn until_counts_from_zero() {
        let out = render(
            "{{ range $i := until 3 }}[{{ $i }}]{{ end }}{{ range until 0 }}x{{ end }}",
            json!({}),
        );
        assert_eq!(out.unwrap(), "[0][1][2]");
    }

    #[test]
    fn errors_name_what_is_unsupported_or_missing() {
        let e = render("{{ .Values.a.b.c }}", json!({})).unwrap_err();
        assert!(e.message.contains("nil pointer"), "{e}");
        let e = render("{{ lookup \"v1\" }}", json!({})).unwrap_err();
        assert!(e.message.contains("lookup"), "{e}");
        assert!(render("{{ if .Values.a }}x", json!({})).is_err());
        assert!(render("{{ .Values.m }}", json!({"m": {"a": 1}})).is_err());
        assert_eq!(
            render("{{/* note */}}x{{- /* c */ -}} y", json!({})).unwrap(),
            "xy"
        );
    }
}
