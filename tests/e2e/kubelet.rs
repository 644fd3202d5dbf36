//! The kubelet ConfigMap layout, built on disk the way kubelet builds it: a
//! timestamped folder, a `..data` symlink to it and one top-level symlink per key; an
//! update writes a new folder, points a temporary link at it and renames that link
//! over `..data`.

use crate::support::{Dir, cron_definition, kubelet_publish, run};
use activity_sync::source;

#[test]
fn configmap_directory_is_read_before_and_after_a_swap() {
    let dir = Dir::new();
    kubelet_publish(
        dir.path(),
        "..2026_12_04_10_00_00.000000001",
        &[
            ("a.yaml", cron_definition("alpha", "@daily")),
            ("b.yaml", cron_definition("beta", "@hourly")),
        ],
    );
    let before = source::load(dir.path(), chrono::Utc::now()).unwrap();
    let names: Vec<&str> = before
        .set
        .definitions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(
        before.set.files, 2,
        "the timestamped folder and ..data are not read twice"
    );
    assert_eq!(run(&["validate", dir.str()]).code, 0);

    // The update changes b.yaml; kubelet then deletes the old folder.
    kubelet_publish(
        dir.path(),
        "..2026_12_04_10_05_00.000000002",
        &[
            ("a.yaml", cron_definition("alpha", "@daily")),
            ("b.yaml", cron_definition("beta", "0 7 * * *")),
        ],
    );
    std::fs::remove_dir_all(dir.path().join("..2026_12_04_10_00_00.000000001")).unwrap();
    let after = source::load(dir.path(), chrono::Utc::now()).unwrap();
    assert_ne!(before.revision, after.revision);
    let beta = after
        .set
        .definitions
        .iter()
        .find(|d| d.name == "beta")
        .unwrap();
    assert_eq!(
        beta.trigger,
        activity_sync::definition::Trigger::Cron {
            expression: "0 7 * * *".into(),
            timezone: None
        }
    );
    // Reading the same content again gives the same revision.
    assert_eq!(
        after.revision,
        source::load(dir.path(), chrono::Utc::now())
            .unwrap()
            .revision
    );
}
