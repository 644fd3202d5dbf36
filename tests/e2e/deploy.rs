//! The deployment kit stays true to the binary: manifests name only settings, ports,
//! paths and commands that exist; the PrometheusRule equals the promtool-tested rules
//! file; the dashboard uses only exported metrics; the OpenAPI document matches the
//! running server. (promtool itself runs in .ci/run.)

use crate::support::{Backend, Dir, Serve, TestDb, cron_definition, http};
use activity_sync::config::{KEYS, Settings};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use temporal_test_server::TestServer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The activity-sync container of a pod template.
fn sidecar(manifest: &Value) -> &Value {
    manifest["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "activity-sync")
        .expect("an activity-sync container")
}

fn known_env() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for k in KEYS {
        names.insert(k.env.to_string());
        if k.secret {
            names.insert(format!("{}_FILE", k.env));
        }
    }
    names
}

#[test]
fn manifests_reference_only_what_the_binary_has() {
    let defaults = Settings::defaults();
    let env_names = known_env();
    for (file, command) in [
        ("deploy/kubernetes/deployment.yaml", "serve"),
        ("deploy/kubernetes/job.yaml", "sync"),
    ] {
        let m = yaml(file);
        let c = sidecar(&m);
        assert_eq!(c["args"][0], command, "{file}");
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            assert!(env_names.contains(name), "{file}: unknown setting {name}");
        }
        let mounts = c["volumeMounts"].as_array().unwrap();
        let defs = mounts
            .iter()
            .find(|v| v["name"] == "definitions")
            .expect("the definitions volume is mounted");
        assert_eq!(
            defs["mountPath"].as_str(),
            defaults.definitions_dir.to_str(),
            "{file}"
        );
        assert!(
            defs.get("subPath").is_none(),
            "{file}: subPath never updates"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{file}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");
        assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{file}");
        assert_eq!(
            m["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true,
            "{file}"
        );
        assert!(c["resources"]["limits"]["memory"].is_string(), "{file}");
        // Secret files come from the mounted Secret.
        for e in c["env"].as_array().unwrap() {
            if e["name"].as_str().unwrap().ends_with("_FILE") {
                assert!(
                    e["value"]
                        .as_str()
                        .unwrap()
                        .starts_with("/var/run/secrets/activity-sync/"),
                    "{file}"
                );
            }
        }
    }
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let c = sidecar(&d);
    assert_eq!(c["ports"][0]["containerPort"], defaults.listen.port());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let cm = volumes.iter().find(|v| v["name"] == "definitions").unwrap();
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    assert_eq!(
        cm["configMap"]["name"],
        kustomization["configMapGenerator"][0]["name"]
    );
    for file in kustomization["configMapGenerator"][0]["files"]
        .as_array()
        .unwrap()
    {
        let path = root()
            .join("deploy/kubernetes")
            .join(file.as_str().unwrap());
        assert!(path.is_file(), "{} is missing", path.display());
    }
    for resource in kustomization["resources"].as_array().unwrap() {
        assert!(
            root()
                .join("deploy/kubernetes")
                .join(resource.as_str().unwrap())
                .is_file()
        );
    }
    let service = yaml("deploy/kubernetes/service.yaml");
    let monitor = yaml("deploy/kubernetes/servicemonitor.yaml");
    assert_eq!(
        service["spec"]["ports"][0]["name"],
        monitor["spec"]["endpoints"][0]["port"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_prometheus_rule_equals_the_tested_rules_file() {
    let crd = yaml("deploy/kubernetes/prometheusrule.yaml");
    let rules = yaml("deploy/prometheus/activity-sync.rules.yaml");
    assert_eq!(crd["spec"]["groups"], rules["groups"]);
}

/// Every `activity_sync_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("activity_sync_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    use activity_sync::metrics::*;
    let exported: BTreeSet<&str> = [
        LAST_SUCCESS,
        LAST_ATTEMPT,
        LAST_ERROR,
        LAST_RUN_SUCCESS,
        LAST_RUN_ERRORS,
        RUNS_TOTAL,
        STAGE_ERRORS_TOTAL,
        CHANGES_TOTAL,
        DURATION_SECONDS,
        SOURCE_DOCUMENTS,
        SOURCE_PENDING,
        SOURCE_LAST_CHANGE,
        IN_PROGRESS,
        BUILD_INFO,
    ]
    .into_iter()
    .collect();
    for file in [
        "deploy/grafana/activity-sync.json",
        "deploy/prometheus/activity-sync.rules.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file}");
        for name in used {
            let base = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{file} uses {name}, which is not exported"
            );
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/activity-sync.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 6);
}

#[test]
fn the_openapi_document_matches_the_server() {
    let doc = yaml("docs/openapi.yaml");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let temporal = rt.block_on(TestServer::start());
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "@daily"));
    let url = temporal.url();
    let s = Serve::start(&[
        ("ACTIVITY_SYNC_DEFINITIONS_DIR", defs.str()),
        ("ACTIVITY_SYNC_DATABASE_URL", db.url.as_str()),
        ("ACTIVITY_SYNC_TEMPORAL_ADDRESS", url.as_str()),
        ("ACTIVITY_SYNC_ADMIN_TOKEN", "t"),
        ("ACTIVITY_SYNC_WATCH_MODE", "off"),
    ]);
    s.wait_for(std::time::Duration::from_secs(20), "ready", |s| {
        (s.get("/readyz").0 == 200).then_some(())
    });
    let auth = ("Authorization", "Bearer t");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 5);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let documented: BTreeSet<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            let (code, _) = http(s.addr, &method.to_uppercase(), path, &[auth]);
            assert!(
                documented.contains(&code),
                "{method} {path} answered {code}, documented {documented:?}"
            );
            if documented.contains(&401) {
                let (code, _) = http(s.addr, &method.to_uppercase(), path, &[]);
                assert_eq!(code, 401, "{method} {path} without a token");
            }
            if documented.contains(&400) {
                let (code, _) = http(
                    s.addr,
                    &method.to_uppercase(),
                    &format!("{path}?nope=1"),
                    &[auth],
                );
                assert_eq!(code, 400, "{method} {path} with a bad parameter");
            }
        }
    }
    // The report's and the status's fields are exactly the documented ones.
    let schemas = &doc["components"]["schemas"];
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let (_, body) = http(s.addr, "POST", "/admin/sync", &[auth]);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&report), keys(&schemas["Report"]["properties"]));
    assert_eq!(
        keys(&report["schedules"]),
        keys(&schemas["ScheduleCounts"]["properties"])
    );
    assert_eq!(
        keys(&report["definitions"]),
        keys(&schemas["RowCounts"]["properties"])
    );
    let (_, body) = http(s.addr, "GET", "/admin/status", &[auth]);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&status), keys(&schemas["Status"]["properties"]));
    assert_eq!(
        keys(&status["source"]),
        keys(&schemas["Status"]["properties"]["source"]["properties"])
    );
}

#[test]
fn the_readme_links_every_piece_of_the_kit() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for piece in [
        "Dockerfile",
        "deploy/kubernetes",
        "deploy/prometheus/activity-sync.rules.yaml",
        "deploy/grafana/activity-sync.json",
        "docs/operations.md",
        "docs/openapi.yaml",
        "docs/customer-ci.md",
    ] {
        assert!(readme.contains(piece), "README does not mention {piece}");
        let path = root().join(piece);
        assert!(path.exists(), "{piece} does not exist");
    }
}
