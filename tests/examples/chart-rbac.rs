//! Prints the chart's ServiceAccounts and RBAC for release `switchboard` in namespace
//! `switchboard-system`, rendered with the chart's defaults: what `helm template
//! --show-only templates/operator-rbac.yaml --show-only templates/registrar-rbac.yaml` gives,
//! for machines without Helm (README, "Try it on a local control plane").

fn main() {
    print!(
        "{}",
        switchboard_tests::installation::rendered_rbac(&serde_json::json!({}))
    );
}
