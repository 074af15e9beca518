//! Checks of `charts/switchboard` that need no cluster and no `helm`: the values schema against
//! values.yaml, every template rendered (by `switchboard_tests::gotmpl`) under the defaults and
//! under overlays that switch every option on, the rendered objects' shape, and the flags the
//! chart passes to both binaries. The CRDs (`files/crds/` plain, `templates/crds.yaml` for the
//! release) are generated; their freshness is tested by `crds/tests/crds_fresh.rs`, what the
//! template renders to here.

use clap::Parser;
use serde_json::{json, Value};
use switchboard_tests::chart::{
    chart_dir, overlays, repo_root, yaml_documents, Chart, Object, Rendered,
};

const RELEASE: &str = "sb";
const NS: &str = "switchboard";

fn chart() -> Chart {
    Chart::load(&chart_dir()).expect("chart loads and its templates parse")
}

fn render(overrides: Value) -> Rendered {
    chart()
        .render(&overrides, RELEASE, NS)
        .unwrap_or_else(|e| panic!("rendering with {overrides}: {e:#}"))
}

#[test]
fn values_yaml_satisfies_the_schema() {
    let c = chart();
    let validator =
        jsonschema::validator_for(&c.schema).expect("the schema is a valid JSON schema");
    let errors: Vec<String> = validator
        .iter_errors(&c.values)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "values.yaml: {errors:#?}");
    for (name, overlay) in overlays() {
        let values = c.values_with(&overlay);
        let errors: Vec<String> = validator
            .iter_errors(&values)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "overlay {name}: {errors:#?}");
    }
}

#[test]
fn the_schema_refuses_wrong_values() {
    let c = chart();
    let validator = jsonschema::validator_for(&c.schema).unwrap();
    for bad in [
        json!({"registrar": {"service": {"type": "Ingress"}}}),
        json!({"registrar": {"service": {"externalTrafficPolicy": "Nearest"}}}),
        json!({"registrar": {"sip": {"port": 70000}}}),
        json!({"registrar": {"httpPort": 0}}),
        json!({"registrar": {"replica": 2}}),
        json!({"redis": {"url": "http://redis:6379"}}),
        json!({"operator": {"image": {"pullPolicy": "Sometimes"}}}),
        json!({"metrics": {"serviceMonitor": {"interval": "soon"}}}),
    ] {
        let values = c.values_with(&bad);
        assert!(!validator.is_valid(&values), "accepted {bad}");
    }
}

#[test]
fn every_template_renders_to_well_formed_objects() {
    for (name, overlay) in overlays() {
        let r = render(overlay);
        let objects = r.objects().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!objects.is_empty());
        let mut seen = std::collections::BTreeSet::new();
        for o in &objects {
            let v = &o.value;
            assert!(
                v["apiVersion"].is_string(),
                "{name}/{}: no apiVersion",
                o.file
            );
            assert!(!o.kind().is_empty(), "{name}/{}: no kind", o.file);
            assert!(!o.name().is_empty(), "{name}/{}: no metadata.name", o.file);
            assert!(o.name().len() <= 63, "{name}/{}: name too long", o.file);
            let namespaced = !matches!(
                o.kind(),
                "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
            );
            // The dashboard goes where Grafana's sidecar looks, when told.
            let elsewhere = o.file == "grafana-dashboard.yaml" && name == "everything";
            if namespaced && !elsewhere {
                assert_eq!(
                    v["metadata"]["namespace"],
                    NS,
                    "{name}/{} {}",
                    o.file,
                    o.name()
                );
            }
            assert_eq!(
                v["metadata"]["labels"]["app.kubernetes.io/instance"],
                RELEASE,
                "{name}/{} {} has the common labels",
                o.file,
                o.name()
            );
            assert!(
                seen.insert((o.kind().to_string(), o.name().to_string())),
                "{name}: two {} named {}",
                o.kind(),
                o.name()
            );
        }
        // Workloads select their own pods.
        for o in objects.iter().filter(|o| o.kind() == "Deployment") {
            let sel = &o.value["spec"]["selector"]["matchLabels"];
            let labels = &o.value["spec"]["template"]["metadata"]["labels"];
            for (k, v) in sel.as_object().unwrap() {
                assert_eq!(
                    &labels[k],
                    v,
                    "{name}: {} pod labels match its selector",
                    o.name()
                );
            }
        }
        assert!(r.files["NOTES.txt"].contains("sip-credentials"));
    }
}

fn container<'a>(o: &'a Object, name: &str) -> &'a Value {
    o.value["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn env(c: &Value, name: &str) -> Option<Value> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

#[test]
fn defaults_are_safe_and_probed() {
    let r = render(json!({}));
    for (deploy, cname, port) in [
        ("-operator", "operator", 8080),
        ("-registrar", "registrar", 9090),
    ] {
        let d = r.find("Deployment", deploy).unwrap();
        let pod = &d.value["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        let c = container(&d, cname);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        let annotations = &d.value["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], port.to_string());
        assert!(
            c["image"].as_str().unwrap().ends_with(":0.1.0"),
            "tag defaults to appVersion"
        );
    }
    let svc = r.find("Service", "-registrar").unwrap();
    assert_eq!(svc.value["spec"]["type"], "LoadBalancer");
    assert_eq!(svc.value["spec"]["externalTrafficPolicy"], "Local");
    let ports: Vec<(String, i64)> = svc.value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap().into(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("UDP".into(), 5060), ("TCP".into(), 5060)]);
    // Off by default: Redis, HPA, ServiceMonitor, TLS, hostNetwork.
    let objects = r.objects().unwrap();
    for kind in ["HorizontalPodAutoscaler", "ServiceMonitor", "Certificate"] {
        assert!(
            objects.iter().all(|o| o.kind() != kind),
            "{kind} is off by default"
        );
    }
    assert!(r.find("Deployment", "-redis").is_err());
    let reg = r.find("Deployment", "-registrar").unwrap();
    assert!(env(container(&reg, "registrar"), "SWITCHBOARD_REDIS_URL").is_none());
    assert!(env(container(&reg, "registrar"), "SWITCHBOARD_PEERS_SERVICE").is_none());
    assert!(reg.value["spec"]["template"]["spec"]["hostNetwork"].is_null());
    assert_eq!(reg.value["spec"]["replicas"], 1);
    r.find("PodDisruptionBudget", "-registrar").unwrap();
}

/// The release installs and upgrades the CRDs (a template, not Helm's `crds/` folder), keeps
/// them on uninstall, and renders exactly what the types generate; `crds.install=false` leaves
/// them to whoever applies `files/crds/`.
#[test]
fn crds_are_templated_kept_and_generated() {
    let crds = |r: &Rendered| -> Vec<Value> {
        r.objects()
            .unwrap()
            .into_iter()
            .filter(|o| o.kind() == "CustomResourceDefinition")
            .map(|o| {
                assert_eq!(o.file, "crds.yaml");
                o.value
            })
            .collect()
    };
    let generated: Vec<Value> = switchboard_crds::manifests::render_crds()
        .iter()
        .flat_map(|(_, yaml)| yaml_documents(yaml).unwrap())
        .collect();
    assert_eq!(generated.len(), 4);
    let rendered = crds(&render(json!({})));
    assert_eq!(rendered.len(), generated.len());
    for (mut r, g) in rendered.into_iter().zip(&generated) {
        let name = g["metadata"]["name"].clone();
        let meta = r["metadata"].as_object_mut().unwrap();
        let annotations = meta.remove("annotations").unwrap_or_default();
        assert_eq!(
            annotations,
            json!({"helm.sh/resource-policy": "keep"}),
            "{name}: kept on helm uninstall"
        );
        let labels = meta.remove("labels").unwrap_or_default();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{name}");
        assert_eq!(
            &r, g,
            "{name}: the template renders what the types generate"
        );
    }
    assert!(crds(&render(json!({"crds": {"install": false}}))).is_empty());
}

#[test]
fn several_registrar_replicas_without_redis_are_refused() {
    for overrides in [
        json!({"registrar": {"replicas": 2}}),
        json!({"registrar": {"autoscaling": {"enabled": true}}}),
    ] {
        let e = chart()
            .render(&overrides, RELEASE, NS)
            .err()
            .unwrap_or_else(|| panic!("{overrides} rendered"));
        assert!(
            format!("{e:#}").contains("set redis.enabled=true or redis.url"),
            "{overrides}: {e:#}"
        );
    }
    render(json!({"registrar": {"replicas": 2}, "redis": {"enabled": true}}));
}

#[test]
fn wss_without_a_certificate_is_refused() {
    let e = chart()
        .render(
            &json!({"registrar": {"websocket": {"wss": true}}}),
            RELEASE,
            NS,
        )
        .err()
        .expect("rendered WSS without TLS");
    assert!(
        format!("{e:#}").contains("set registrar.tls.enabled=true"),
        "{e:#}"
    );
    let defaults = render(json!({}));
    let svc = defaults.find("Service", "-registrar").unwrap();
    let names: Vec<&Value> = svc.value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(
        !names.contains(&&json!("sip-ws")) && !names.contains(&&json!("sip-wss")),
        "{names:?}"
    );
    render(json!({"registrar": {"replicas": 2}, "redis": {"url": "redis://r:6379/0"}}));
}

#[test]
fn options_render_what_they_promise() {
    let all = render(overlays()[1].1.clone());
    let reg = all.find("Deployment", "-registrar").unwrap();
    assert!(
        reg.value["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    let hpa = all.find("HorizontalPodAutoscaler", "-registrar").unwrap();
    assert_eq!(hpa.value["spec"]["scaleTargetRef"]["name"], reg.name());
    let c = container(&reg, "registrar");
    let a = args(c);
    assert!(
        a.windows(2).any(|w| w == ["--tls", "0.0.0.0:5061"]),
        "{a:?}"
    );
    assert!(a
        .windows(2)
        .any(|w| w == ["--tls-cert", "/etc/switchboard/tls/tls.crt"]));
    assert!(a
        .windows(2)
        .any(|w| w == ["--tls-key", "/etc/switchboard/tls/tls.key"]));
    let volume = &reg.value["spec"]["template"]["spec"]["volumes"][0]["secret"];
    assert_eq!(volume["secretName"], "sb-switchboard-registrar-tls");
    let cert = all.find("Certificate", "-registrar").unwrap();
    assert_eq!(cert.value["spec"]["secretName"], volume["secretName"]);
    assert_eq!(
        env(c, "SWITCHBOARD_REDIS_URL").unwrap()["value"],
        "redis://sb-switchboard-redis:6379/0"
    );
    // With shared bindings, the replicas find each other through their Service's endpoints.
    assert_eq!(
        env(c, "SWITCHBOARD_PEERS_SERVICE").unwrap()["value"],
        all.find("Service", "-registrar").unwrap().name()
    );
    all.find("Deployment", "-redis").unwrap();
    all.find("Service", "-redis").unwrap();
    let sm = all.find("ServiceMonitor", "sb-switchboard").unwrap();
    assert_eq!(sm.value["metadata"]["labels"]["release"], "prom");
    let svc = all.find("Service", "-registrar").unwrap();
    let tls = svc.value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sip-tls")
        .expect("TLS port")
        .clone();
    assert_eq!(tls["port"], 5061);
    assert_eq!(tls["nodePort"], 30061);
    // Browser phones: WS and WSS on the Service, the pod and the command line.
    let ports = svc.value["spec"]["ports"].as_array().unwrap();
    let port = |name: &str| ports.iter().find(|p| p["name"] == name).cloned();
    assert_eq!(port("sip-ws").expect("WS port")["port"], 8080);
    let wss = port("sip-wss").expect("WSS port");
    assert_eq!(
        (&wss["port"], &wss["nodePort"]),
        (&json!(8443), &json!(30443))
    );
    for flag in [
        ["--ws", "0.0.0.0:8080"],
        ["--wss", "0.0.0.0:8443"],
        ["--ws-allowed-origin", "https://phone.example.com"],
    ] {
        assert!(a.windows(2).any(|w| w == flag), "{flag:?} in {a:?}");
    }
    assert_eq!(svc.value["spec"]["loadBalancerIP"], "192.0.2.1");

    let host = render(overlays()[2].1.clone());
    let reg = host.find("Deployment", "-registrar").unwrap();
    let pod = &reg.value["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(
        reg.value["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        0
    );
    let c = container(&reg, "registrar");
    assert_eq!(
        env(c, "SWITCHBOARD_REDIS_URL").unwrap()["value"],
        "redis://redis.example:6379/1",
        "an existing Redis wins over the in-chart one"
    );
    assert!(host.find("Deployment", "-redis").is_err());
    assert!(!args(c).contains(&"--tcp".to_string()));
    let svc = host.find("Service", "-registrar").unwrap();
    assert_eq!(svc.value["spec"]["type"], "NodePort");
    assert_eq!(svc.value["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(host.find("PodDisruptionBudget", "-registrar").is_err());
    assert!(reg.value["spec"]["template"]["metadata"]["annotations"].is_null());

    let bare = render(overlays()[3].1.clone());
    assert!(bare.find("Deployment", "-operator").is_err());
    let svc = bare.find("Service", "voice-registrar").unwrap();
    assert!(
        svc.value["spec"]["externalTrafficPolicy"].is_null(),
        "not on ClusterIP"
    );
    let reg = bare.find("Deployment", "voice-registrar").unwrap();
    assert_eq!(
        reg.value["spec"]["template"]["spec"]["serviceAccountName"],
        "registrar"
    );
    assert!(bare.find("ServiceAccount", "-registrar").is_err());
}

#[test]
fn the_registrar_accepts_every_flag_the_chart_passes() {
    for (name, overlay) in overlays() {
        let r = render(overlay);
        let reg = r.find("Deployment", "-registrar").unwrap();
        let mut argv = vec!["switchboard-registrar".to_string()];
        argv.extend(args(container(&reg, "registrar")));
        if let Err(e) = switchboard_registrar::cli::Cli::try_parse_from(&argv) {
            panic!("{name}: the registrar refuses the chart's arguments {argv:?}:\n{e}");
        }
    }
}

/// `/debug/*` (phone addresses) listens on the pod's loopback unless a value says otherwise,
/// never on the metrics port; NOTES say how to reach it.
#[test]
fn registrar_debug_endpoints_stay_on_loopback_by_default() {
    let flag = |r: &Rendered| -> Vec<String> {
        let reg = r.find("Deployment", "-registrar").unwrap();
        let a = args(container(&reg, "registrar"));
        let at = a
            .iter()
            .position(|x| x == "--debug-http")
            .expect("--debug-http");
        assert!(
            a.windows(2).any(|w| w == ["--http", "0.0.0.0:9090"]),
            "{a:?}"
        );
        vec![a[at + 1].clone()]
    };
    let r = render(json!({}));
    assert_eq!(flag(&r), ["127.0.0.1:9091"]);
    let notes = &r.files["NOTES.txt"];
    assert!(
        notes.contains("port-forward deploy/sb-switchboard-registrar 9091\n"),
        "{notes}"
    );
    let open = render(json!({"registrar": {"debug": {"address": "0.0.0.0:9191"}}}));
    assert_eq!(flag(&open), ["0.0.0.0:9191"]);
    assert!(open.files["NOTES.txt"].contains("9091:<port of 0.0.0.0:9191>"));
    let c = chart();
    let validator = jsonschema::validator_for(&c.schema).unwrap();
    for bad in ["localhost", "9091", ""] {
        let values = c.values_with(&json!({"registrar": {"debug": {"address": bad}}}));
        assert!(
            !validator.is_valid(&values),
            "accepted debug address {bad:?}"
        );
    }
}

/// The operator's CLI lives in its `main.rs` (a binary, not linkable): its `--long` flags are
/// read from the `#[arg(long …)]` fields there.
fn operator_flags() -> Vec<String> {
    let src = std::fs::read_to_string(repo_root().join("operator/src/main.rs")).unwrap();
    let re = regex::Regex::new(r"#\[arg\(([^\]]*)\)\]\s*(?:pub\s+)?(\w+)\s*:").unwrap();
    let explicit = regex::Regex::new(r#"long\s*=\s*"([^"]+)""#).unwrap();
    let mut flags = vec!["--help".to_string(), "--version".to_string()];
    for c in re.captures_iter(&src) {
        let attr = &c[1];
        if !attr.contains("long") {
            continue;
        }
        flags.push(match explicit.captures(attr) {
            Some(l) => format!("--{}", &l[1]),
            None => format!("--{}", c[2].replace('_', "-")),
        });
    }
    assert!(flags.len() > 3, "found the operator's flags: {flags:?}");
    flags
}

#[test]
fn the_operator_knows_every_flag_the_chart_passes() {
    let known = operator_flags();
    for (name, overlay) in overlays() {
        let r = render(overlay);
        let Ok(op) = r.find("Deployment", "-operator") else {
            continue;
        };
        for a in args(container(&op, "operator")) {
            if a.starts_with("--") {
                assert!(
                    known.contains(&a),
                    "{name}: operator has no flag {a} ({known:?})"
                );
            }
        }
    }
}

#[test]
fn notes_tell_the_real_credentials_secret_and_keys() {
    let notes = &render(json!({})).files["NOTES.txt"];
    let secret = format!("desk-phone{}", "-sip-credentials");
    let operator_src =
        std::fs::read_to_string(repo_root().join("operator/src/credentials/mod.rs")).unwrap();
    assert!(
        operator_src.contains("pub const SECRET_SUFFIX: &str = \"-sip-credentials\";"),
        "the operator still names generated Secrets <device>-sip-credentials"
    );
    assert!(notes.contains(&format!("get secret {secret}")), "{notes}");
    for key in [
        switchboard_crds::common::USERNAME_KEY,
        switchboard_crds::common::DEFAULT_PASSWORD_KEY,
    ] {
        assert!(
            notes.contains(&format!("{{.data.{key}}}")),
            "NOTES reads key {key}"
        );
    }
    // The example objects in NOTES are valid resources.
    let yaml: String = notes
        .split("<<'YAML'\n")
        .nth(1)
        .and_then(|s| s.split("   YAML").next())
        .expect("an embedded manifest")
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let docs = yaml_documents(&yaml).unwrap();
    assert_eq!(docs.len(), 2);
    let mut problems = Vec::new();
    for d in switchboard_crds::documents::parse(&yaml) {
        let d = d.expect("a typed resource");
        problems.extend(
            d.validate()
                .into_iter()
                .map(|p| format!("{}: {p:?}", d.describe())),
        );
    }
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
#[ignore = "debugging aid: dumps a rendering to $DUMP_DIR"]
fn dump() {
    let dir = std::env::var("DUMP_DIR").unwrap();
    for (name, overlay) in overlays() {
        for (file, text) in render(overlay).files {
            std::fs::create_dir_all(format!("{dir}/{name}")).unwrap();
            std::fs::write(format!("{dir}/{name}/{file}"), text).unwrap();
        }
    }
}

/// The metric names a PromQL expression reads: label matchers, groupings, ranges and strings
/// taken out, what is left that is not a function call, a keyword or a number.
fn promql_metrics(expr: &str) -> Vec<String> {
    let stripped =
        regex::Regex::new(r#""[^"]*"|\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring)\s*\([^)]*\)"#)
            .unwrap()
            .replace_all(expr, " ");
    let words = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?").unwrap();
    const KEYWORDS: [&str; 7] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "group_left",
        "group_right",
    ];
    words
        .find_iter(&stripped)
        .map(|m| m.as_str())
        .filter(|w| !w.ends_with('(') && !KEYWORDS.contains(w))
        .map(str::to_string)
        .collect()
}

#[test]
fn promql_metrics_finds_the_series_names() {
    assert_eq!(
        promql_metrics(
            r#"sum by (site) (rate(sip_calls_total{outcome="x"}[$__rate_interval])) / max(up) or vector(0)"#
        ),
        ["sip_calls_total", "up"]
    );
}

/// The Grafana dashboard and the alerts render (ConfigMap for the sidecar, PrometheusRule), and
/// every metric a panel or an alert queries is one the registrar or the operator registers.
#[test]
fn dashboard_and_alerts_query_only_metrics_the_binaries_export() {
    let registrar = switchboard_registrar::metrics::Metrics::new();
    let operator = switchboard_operator::runtime::metrics::Metrics::new();
    let exported: Vec<&String> = registrar.names().iter().chain(operator.names()).collect();
    let all = render(overlays()[1].1.clone());

    let cm = all.find("ConfigMap", "-dashboard").unwrap();
    assert_eq!(cm.value["metadata"]["namespace"], "monitoring");
    assert_eq!(cm.value["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm.value["data"]["switchboard.json"].as_str().unwrap())
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        queries.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string()),
        );
    }
    assert!(queries.len() >= 12, "{queries:?}");

    let rule = all.find("PrometheusRule", "").unwrap();
    assert_eq!(rule.value["metadata"]["labels"]["release"], "prom");
    let rules = rule.value["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for want in [
        "SwitchboardUpstreamRegistrationFailed",
        "SwitchboardAuthFailureSpike",
        "SwitchboardRegistrarConfigNotLoaded",
        "SwitchboardNoOperatorLeader",
    ] {
        assert!(alerts.contains(&want), "{alerts:?}");
    }
    for r in rules {
        assert!(r["annotations"]["summary"].is_string(), "{r}");
        queries.push(r["expr"].as_str().unwrap().to_string());
    }

    for q in &queries {
        let metrics = promql_metrics(q);
        assert!(!metrics.is_empty(), "no metric in {q}");
        for m in metrics {
            assert!(
                exported.iter().any(|e| **e == m),
                "{q} reads {m}, which neither binary exports"
            );
        }
    }
    // Without the operator there is no leader to miss.
    let mut overlay = overlays()[1].1.clone();
    overlay["operator"]["enabled"] = json!(false);
    let rule = render(overlay).find("PrometheusRule", "").unwrap();
    assert!(!rule
        .value
        .to_string()
        .contains("SwitchboardNoOperatorLeader"));
}
