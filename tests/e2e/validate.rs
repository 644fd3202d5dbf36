//! `activity-sync validate` on real files: exit codes, the three output formats, and
//! hostile input that must end in a clear error, never a panic, hang or huge
//! allocation.

use crate::support::{Dir, cron_definition, fixtures, run, run_with, samples};
use std::time::Duration;

#[test]
fn sample_definitions_are_valid() {
    let out = run(&["validate", samples().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("valid: 3 file(s), 6 document(s), 5 definition(s), 1 event type(s): 0 error(s), 0 warning(s)"), "{}", out.stdout);
}

/// Each file under tests/fixtures/invalid/ breaks one rule; its first line says the
/// diagnostic (`line:column: message`) that validating it alone must print.
#[test]
fn every_invalid_fixture_reports_its_rule_with_position() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures().join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name} has no `# expect:` first line"));
        let dir = Dir::new();
        dir.write(&name, &text);
        let out = run_with(&["validate", dir.str()], &[], Duration::from_secs(10));
        assert_eq!(out.code, 1, "{name} must be invalid: {out:?}");
        let wanted = format!("{name}:{expect}");
        assert!(
            out.stdout.lines().any(|l| l == wanted),
            "{name}: wanted line\n{wanted}\ngot\n{}",
            out.stdout
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} fixtures");
}

#[test]
fn all_diagnostics_are_collected_not_only_the_first() {
    let dir = Dir::new();
    dir.write("a.yaml", cron_definition("a", "61 * * * *"));
    dir.write(
        "b.yaml",
        format!(
            "{}---\n{}",
            cron_definition("b", "0 0 L * *"),
            cron_definition("c", "@daily")
        ),
    );
    dir.write("c.yaml", "kind: Nope\n");
    let out = run(&["validate", dir.str(), "--format", "json"]);
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let files: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"a.yaml") && files.contains(&"b.yaml") && files.contains(&"c.yaml"),
        "{files:?}"
    );
    assert_eq!(v["valid"], false);
    assert_eq!(v["documents"], 4);
    assert_eq!(v["invalid"], 3);
    // The valid document in b.yaml is frozen with its file, not applied.
    assert_eq!(v["definitions"], 0);
}

#[test]
fn duplicate_names_in_two_files_are_reported_on_every_copy() {
    let dir = Dir::new();
    dir.write("one.yaml", cron_definition("shared-name", "@daily"));
    dir.write("two.yaml", cron_definition("shared-name", "@hourly"));
    dir.write("three.yaml", cron_definition("unique", "@hourly"));
    let out = run(&["validate", dir.str()]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("one.yaml:4:9: metadata.name: duplicate ActivityDefinition name `shared-name` (also defined at two.yaml:4)"), "{}", out.stdout);
    assert!(out.stdout.contains("two.yaml:4:9: metadata.name: duplicate ActivityDefinition name `shared-name` (also defined at one.yaml:4)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("1 definition(s)"),
        "only `unique` is applicable: {}",
        out.stdout
    );
}

#[test]
fn warnings_do_not_fail_validation() {
    let dir = Dir::new();
    dir.write(
        "a.yaml",
        "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {name: once}\nspec:\n  activity: x\n  trigger: {at: 2001-01-01T00:00:00Z}\n---\napiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {name: on-event}\nspec:\n  activity: x\n  trigger: {event: order.placed}\n",
    );
    let out = run(&["validate", dir.str()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "a.yaml:6:17: warning: spec.trigger.at: `2001-01-01T00:00:00Z` is in the past"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("warning: spec.trigger.event: event `order.placed` is not declared"),
        "{}",
        out.stdout
    );
}

#[test]
fn github_format_prints_annotations() {
    let dir = Dir::new();
    dir.write("bad.yaml", cron_definition("x", "0 0 * * * 2101"));
    let out = run(&["validate", dir.str(), "--format", "github"]);
    assert_eq!(out.code, 1);
    let line = out.stdout.lines().next().unwrap();
    let file = format!("{}/bad.yaml", dir.str()).replace(':', "%3A");
    assert_eq!(
        line,
        format!(
            "::error file={file},line=8,col=11,title=activity-sync::spec.trigger.cron: `0 0 * * * 2101`: year: value 2101 is out of range (allowed 2000-2100)"
        )
    );
}

#[test]
fn missing_directory_fails_with_a_clear_message() {
    let dir = Dir::new();
    let missing = dir.path().join("nope");
    let out = run(&["validate", missing.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("does not exist"), "{out:?}");
}

#[test]
fn hostile_files_end_in_clear_errors_quickly() {
    let dir = Dir::new();
    // A 50 MiB file (sparse: its size alone must get it refused, unread).
    let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
    big.set_len(50 * 1024 * 1024).unwrap();
    // Just over 1 MiB of real text.
    dir.write("over.yaml", "#".repeat(1024 * 1024 + 1));
    dir.write("latin1.yaml", b"metadata:\n  name: caf\xe9\n");
    dir.write("binary.yaml", [0x7fu8, b'E', b'L', b'F', 0, 1, 2, 3]);
    // Nesting inside `input`, which accepts any value: only the budget can stop it.
    let header = "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {name: deep}\nspec:\n  activity: x\n  trigger: {cron: '@daily'}\n  input:";
    dir.write(
        "deep.yaml",
        format!("{header} {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
    );
    let block: String = (0..1_000)
        .map(|i| format!("{}k:\n", " ".repeat(4 + i)))
        .collect();
    dir.write("deep-block.yaml", format!("{header}\n{block}"));
    std::os::unix::fs::symlink("loop-b.yaml", dir.path().join("loop-a.yaml")).unwrap();
    std::os::unix::fs::symlink("loop-a.yaml", dir.path().join("loop-b.yaml")).unwrap();
    let outside = Dir::new();
    outside.write("secret.yaml", cron_definition("stolen", "@daily"));
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("escape.yaml"),
    )
    .unwrap();
    dir.write("good.yaml", cron_definition("good", "@daily"));

    let out = run_with(&["validate", dir.str()], &[], Duration::from_secs(10));
    assert_eq!(out.code, 1, "{out:?}");
    let expect = [
        "big.yaml:0:0: file is 52428800 bytes; the limit is 1048576",
        "over.yaml:0:0: file is 1048577 bytes; the limit is 1048576",
        "latin1.yaml:2:12: file is not valid UTF-8",
        "binary.yaml:0:0: file contains NUL bytes",
        "deep.yaml:",
        "deep-block.yaml:",
        "loop-a.yaml:0:0: is a symlink loop; it was not read",
        "loop-b.yaml:0:0: is a symlink loop; it was not read",
        "escape.yaml:0:0: is a symlink to ",
    ];
    for e in expect {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(e)),
            "no line starting with {e:?} in\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("outside the definitions directory; it was not read")
    );
    assert!(
        !out.stdout.contains("stolen"),
        "the file outside must never be read"
    );
    let deep = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("deep"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        deep.matches("YAML nesting is deeper than 32 levels")
            .count(),
        2,
        "{deep}"
    );
    assert!(
        out.stdout.contains("1 definition(s)"),
        "good.yaml still parses: {}",
        out.stdout
    );
}

#[test]
fn other_files_and_dot_entries_are_skipped() {
    let dir = Dir::new();
    dir.write("a.yaml", cron_definition("a", "@daily"));
    dir.write("b.yml", cron_definition("b", "@daily"));
    dir.write("README.md", "not a definition");
    dir.write(".hidden.yaml", "garbage: [");
    dir.write("..2026_12_04/x.yaml", "garbage: [");
    dir.write("sub/nested.yaml", "garbage: [");
    std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
    let out = run(&["validate", dir.str()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("2 file(s), 2 document(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_configuration_exits_64_naming_every_setting() {
    let dir = Dir::new();
    let out = run_with(
        &["validate", dir.str()],
        &[
            ("ACTIVITY_SYNC_TEMPORAL_MAX_RPS", "fast"),
            ("ACTIVITY_SYNC_WATCH_MODE", "maybe"),
            ("ACTIVITY_SYNC_PRUNE_MAX_FRACTION", "2"),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 64, "{out:?}");
    for name in [
        "ACTIVITY_SYNC_TEMPORAL_MAX_RPS",
        "ACTIVITY_SYNC_WATCH_MODE",
        "ACTIVITY_SYNC_PRUNE_MAX_FRACTION",
    ] {
        assert!(
            out.stderr.contains(name),
            "{name} not named in {}",
            out.stderr
        );
    }
    let cfg = dir.write("c.toml", "[watch]\nmode = \"auto\"\nunknown = 1\n");
    let out = run(&["--config", cfg.to_str().unwrap(), "validate", dir.str()]);
    assert_eq!(out.code, 64);
    assert!(
        out.stderr.contains("unknown setting `watch.unknown`"),
        "{}",
        out.stderr
    );
}

#[test]
fn configured_directory_is_the_default() {
    let out = run_with(
        &["validate"],
        &[("ACTIVITY_SYNC_DEFINITIONS_DIR", samples().to_str().unwrap())],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn schema_is_json_with_both_kinds() {
    let out = run(&["schema"]);
    assert_eq!(out.code, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ActivityDefinition", "EventType"]);
    assert_eq!(
        v["oneOf"][0]["properties"]["spec"]["additionalProperties"],
        false
    );
}
