//! The planner: desired state (from the source) + observed state (from a store) → the
//! list of changes, with the safety rules that keep a typo, an empty mount or a mass
//! deletion from pruning anything.
//!
//! Pure: no I/O, nothing from tokio, sqlx, tonic or axum. Every stage (definitions,
//! event types, schedules) plans through [`plan`], so the prune guards are written once.

pub mod records;

use std::collections::{BTreeMap, BTreeSet};

/// One desired item: its name and the hash of its desired content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired<'a> {
    pub name: &'a str,
    pub hash: &'a str,
}

/// One observed item as the store (or Temporal) holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    pub owner: String,
    pub hash: String,
    /// Soft-removed (kept, but no longer in the source).
    pub removed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Create,
    /// A soft-removed item that is back in the source.
    Revive,
    Update,
    Remove,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Revive => "revive",
            Op::Update => "update",
            Op::Remove => "remove",
        }
    }
}

/// A desired item whose name is held by another owner: it is left alone and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    pub owner: String,
}

/// Whether removals may happen in this stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruning {
    /// No guard tripped.
    Clear,
    /// A guard tripped and `force` lifted it; the reason is kept for the report.
    Forced(String),
    /// Removals are held back for this reason.
    Suspended(String),
}

/// The safety rules for one stage.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    pub owner: &'a str,
    /// Documents in the source that failed validation: any at all suspends pruning,
    /// whatever `force` says.
    pub invalid_documents: usize,
    /// Names whose stored state must stay exactly as it is.
    pub frozen: &'a BTreeSet<String>,
    /// Largest share of owned items one run may remove.
    pub max_fraction: f64,
    /// Lifts the zero-left and max-fraction guards (never the invalid-source one).
    pub force: bool,
    /// What the items are called in messages ("definitions", "event types", …).
    pub noun: &'static str,
}

/// The changes for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Changes by name, in name order.
    pub ops: Vec<(String, Op)>,
    pub unchanged: usize,
    pub conflicts: Vec<Conflict>,
    pub pruning: Pruning,
    /// Removals that the guards held back.
    pub held_removals: usize,
}

impl Plan {
    pub fn count(&self, op: Op) -> usize {
        self.ops.iter().filter(|(_, o)| *o == op).count()
    }
}

/// Plans one stage. `observed` may hold other owners' items; they are never changed.
pub fn plan(desired: &[Desired<'_>], observed: &[Observed], rules: &Rules<'_>) -> Plan {
    let by_name: BTreeMap<&str, &Observed> =
        observed.iter().map(|o| (o.name.as_str(), o)).collect();
    let mut ops = Vec::new();
    let mut unchanged = 0;
    let mut conflicts = Vec::new();
    let mut wanted = BTreeSet::new();
    for d in desired {
        wanted.insert(d.name);
        if rules.frozen.contains(d.name) {
            continue;
        }
        match by_name.get(d.name) {
            None => ops.push((d.name.to_string(), Op::Create)),
            Some(o) if o.owner != rules.owner => conflicts.push(Conflict {
                name: d.name.to_string(),
                owner: o.owner.clone(),
            }),
            Some(o) if o.removed => ops.push((d.name.to_string(), Op::Revive)),
            Some(o) if o.hash != d.hash => ops.push((d.name.to_string(), Op::Update)),
            Some(_) => unchanged += 1,
        }
    }
    let owned_active: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.owner == rules.owner && !o.removed)
        .collect();
    let removals: Vec<&str> = owned_active
        .iter()
        .filter(|o| !wanted.contains(o.name.as_str()) && !rules.frozen.contains(&o.name))
        .map(|o| o.name.as_str())
        .collect();

    // An invalid source suspends pruning for the whole run, whether or not anything
    // would be removed, so the report says so every time.
    let pruning = if rules.invalid_documents > 0 {
        Pruning::Suspended(format!("{} invalid document(s)", rules.invalid_documents))
    } else if removals.is_empty() {
        Pruning::Clear
    } else {
        let owned = owned_active.len();
        let share = removals.len() as f64 / owned as f64;
        let left = owned - removals.len()
            + ops
                .iter()
                .filter(|(_, op)| matches!(op, Op::Create | Op::Revive))
                .count();
        let guard = if left == 0 {
            Some(format!(
                "would remove all {owned} owned {} and leave none",
                rules.noun
            ))
        } else if share > rules.max_fraction {
            Some(format!(
                "would remove {} of {owned} owned {} ({:.0}%), more than prune.max_fraction ({:.0}%)",
                removals.len(),
                rules.noun,
                share * 100.0,
                rules.max_fraction * 100.0
            ))
        } else {
            None
        };
        match guard {
            None => Pruning::Clear,
            Some(reason) if rules.force => Pruning::Forced(reason),
            Some(reason) => Pruning::Suspended(reason),
        }
    };
    let held_removals = match pruning {
        Pruning::Suspended(_) => removals.len(),
        _ => {
            ops.extend(removals.iter().map(|n| (n.to_string(), Op::Remove)));
            0
        }
    };
    ops.sort();
    Plan {
        ops,
        unchanged,
        conflicts,
        pruning,
        held_removals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        desired: &'static [(&'static str, &'static str)],
        observed: &'static [(&'static str, &'static str, &'static str, bool)],
        invalid: usize,
        frozen: &'static [&'static str],
        force: bool,
    }

    const BASE: Case = Case {
        desired: &[],
        observed: &[],
        invalid: 0,
        frozen: &[],
        force: false,
    };

    fn check(case: Case) -> Plan {
        let desired: Vec<Desired> = case
            .desired
            .iter()
            .map(|(n, h)| Desired { name: n, hash: h })
            .collect();
        let observed: Vec<Observed> = case
            .observed
            .iter()
            .map(|(n, owner, h, removed)| Observed {
                name: n.to_string(),
                owner: owner.to_string(),
                hash: h.to_string(),
                removed: *removed,
            })
            .collect();
        let frozen: BTreeSet<String> = case.frozen.iter().map(|s| s.to_string()).collect();
        let rules = Rules {
            owner: "me",
            invalid_documents: case.invalid,
            frozen: &frozen,
            max_fraction: 0.5,
            force: case.force,
            noun: "definitions",
        };
        plan(&desired, &observed, &rules)
    }

    fn ops(p: &Plan) -> Vec<(&str, Op)> {
        p.ops.iter().map(|(n, o)| (n.as_str(), *o)).collect()
    }

    #[test]
    fn creates_updates_revives_and_skips_unchanged() {
        let p = check(Case {
            desired: &[("a", "h1"), ("b", "h2"), ("c", "h3"), ("d", "h4")],
            observed: &[
                ("b", "me", "old", false),
                ("c", "me", "h3", false),
                ("d", "me", "h4", true),
            ],
            ..BASE
        });
        assert_eq!(
            ops(&p),
            [("a", Op::Create), ("b", Op::Update), ("d", Op::Revive)]
        );
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.pruning, Pruning::Clear);
    }

    #[test]
    fn removes_owned_items_that_left_the_source() {
        let p = check(Case {
            desired: &[("a", "h"), ("b", "h")],
            observed: &[
                ("a", "me", "h", false),
                ("b", "me", "h", false),
                ("gone", "me", "h", false),
                ("old", "me", "h", true),
            ],
            ..BASE
        });
        assert_eq!(ops(&p), [("gone", Op::Remove)]);
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn other_owners_items_are_never_touched() {
        let p = check(Case {
            desired: &[("mine", "h"), ("taken", "h")],
            observed: &[
                ("theirs", "other", "h", false),
                ("taken", "other", "x", false),
                ("mine", "me", "h", false),
            ],
            ..BASE
        });
        assert!(p.ops.is_empty(), "{:?}", p.ops);
        assert_eq!(
            p.conflicts,
            [Conflict {
                name: "taken".into(),
                owner: "other".into()
            }]
        );
    }

    #[test]
    fn an_invalid_source_suspends_all_pruning_even_with_force() {
        let p = check(Case {
            desired: &[("a", "h")],
            observed: &[
                ("a", "me", "h", false),
                ("b", "me", "h", false),
                ("c", "me", "h", false),
            ],
            invalid: 1,
            force: true,
            ..BASE
        });
        assert!(p.ops.is_empty());
        assert_eq!(
            p.pruning,
            Pruning::Suspended("1 invalid document(s)".into())
        );
        assert_eq!(p.held_removals, 2);
    }

    #[test]
    fn frozen_items_are_neither_updated_nor_removed() {
        let p = check(Case {
            desired: &[("a", "new"), ("b", "h")],
            observed: &[
                ("a", "me", "old", false),
                ("b", "me", "h", false),
                ("f", "me", "h", false),
            ],
            frozen: &["a", "f"],
            ..BASE
        });
        assert!(p.ops.is_empty(), "{:?}", p.ops);
    }

    #[test]
    fn leaving_zero_owned_items_needs_force() {
        let observed: &[(&str, &str, &str, bool)] = &[("a", "me", "h", false)];
        let p = check(Case { observed, ..BASE });
        assert_eq!(
            p.pruning,
            Pruning::Suspended("would remove all 1 owned definitions and leave none".into())
        );
        assert!(p.ops.is_empty());
        let p = check(Case {
            observed,
            force: true,
            ..BASE
        });
        assert!(matches!(p.pruning, Pruning::Forced(_)));
        assert_eq!(ops(&p), [("a", Op::Remove)]);
    }

    #[test]
    fn removing_more_than_the_max_fraction_needs_force() {
        let observed: &[(&str, &str, &str, bool)] = &[
            ("a", "me", "h", false),
            ("b", "me", "h", false),
            ("c", "me", "h", false),
            ("d", "me", "h", false),
            ("e", "me", "h", false),
        ];
        // 3 of 5 = 60% > 50%.
        let desired: &[(&str, &str)] = &[("a", "h"), ("b", "h")];
        let p = check(Case {
            desired,
            observed,
            ..BASE
        });
        assert_eq!(
            p.pruning,
            Pruning::Suspended(
                "would remove 3 of 5 owned definitions (60%), more than prune.max_fraction (50%)"
                    .into()
            )
        );
        assert_eq!(p.held_removals, 3);
        let p = check(Case {
            desired,
            observed,
            force: true,
            ..BASE
        });
        assert_eq!(p.count(Op::Remove), 3);
        // 2 of 5 = 40% is within the limit.
        let desired: &[(&str, &str)] = &[("a", "h"), ("b", "h"), ("c", "h")];
        let p = check(Case {
            desired,
            observed,
            ..BASE
        });
        assert_eq!(
            (p.pruning.clone(), p.count(Op::Remove)),
            (Pruning::Clear, 2)
        );
    }

    #[test]
    fn replacing_everything_is_not_leaving_zero() {
        // Renaming the only definition: one create, one removal, one item left.
        let p = check(Case {
            desired: &[("new", "h")],
            observed: &[("old", "me", "h", false)],
            force: false,
            ..BASE
        });
        // 1 of 1 = 100% exceeds the fraction guard, so it still needs force.
        assert!(matches!(p.pruning, Pruning::Suspended(ref r) if r.contains("100%")));
        assert_eq!(ops(&p), [("new", Op::Create)]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h"];

    #[derive(Debug, Clone)]
    struct World {
        desired: Vec<(String, String)>,
        observed: Vec<Observed>,
        frozen: BTreeSet<String>,
        invalid: usize,
        force: bool,
        max_fraction: f64,
    }

    fn world() -> impl Strategy<Value = World> {
        let desired = prop::collection::btree_map(prop::sample::select(NAMES), 0u8..3, 0..8);
        let observed = prop::collection::btree_map(
            prop::sample::select(NAMES),
            (
                prop::sample::select(vec!["me", "other"]),
                0u8..3,
                any::<bool>(),
            ),
            0..8,
        );
        let frozen = prop::collection::btree_set(prop::sample::select(NAMES), 0..3);
        (
            desired,
            observed,
            frozen,
            0usize..2,
            any::<bool>(),
            0.1f64..1.0,
        )
            .prop_map(
                |(desired, observed, frozen, invalid, force, max_fraction)| World {
                    desired: desired
                        .into_iter()
                        .map(|(n, h)| (n.to_string(), format!("h{h}")))
                        .collect(),
                    observed: observed
                        .into_iter()
                        .map(|(n, (owner, h, removed))| Observed {
                            name: n.to_string(),
                            owner: owner.to_string(),
                            hash: format!("h{h}"),
                            removed,
                        })
                        .collect(),
                    frozen: frozen.into_iter().map(String::from).collect(),
                    invalid,
                    force,
                    max_fraction,
                },
            )
    }

    fn run(w: &World, observed: &[Observed]) -> Plan {
        let desired: Vec<Desired> = w
            .desired
            .iter()
            .map(|(n, h)| Desired { name: n, hash: h })
            .collect();
        let rules = Rules {
            owner: "me",
            invalid_documents: w.invalid,
            frozen: &w.frozen,
            max_fraction: w.max_fraction,
            force: w.force,
            noun: "items",
        };
        plan(&desired, observed, &rules)
    }

    /// The store after applying `plan` (what the apply step writes).
    fn applied(w: &World, p: &Plan) -> Vec<Observed> {
        let mut rows: BTreeMap<String, Observed> = w
            .observed
            .iter()
            .map(|o| (o.name.clone(), o.clone()))
            .collect();
        let hashes: BTreeMap<&str, &str> = w
            .desired
            .iter()
            .map(|(n, h)| (n.as_str(), h.as_str()))
            .collect();
        for (name, op) in &p.ops {
            match op {
                Op::Remove => {
                    if let Some(r) = rows.get_mut(name) {
                        r.removed = true;
                    }
                }
                _ => {
                    rows.insert(
                        name.clone(),
                        Observed {
                            name: name.clone(),
                            owner: "me".into(),
                            hash: hashes[name.as_str()].to_string(),
                            removed: false,
                        },
                    );
                }
            }
        }
        rows.into_values().collect()
    }

    proptest! {
        #[test]
        fn nothing_frozen_or_foreign_is_ever_changed(w in world()) {
            let p = run(&w, &w.observed);
            for (name, _) in &p.ops {
                prop_assert!(!w.frozen.contains(name), "frozen {name} changed");
                let foreign = w.observed.iter().any(|o| &o.name == name && o.owner != "me");
                prop_assert!(!foreign, "foreign {name} changed");
            }
        }

        #[test]
        fn an_invalid_source_never_removes(w in world()) {
            let p = run(&w, &w.observed);
            if w.invalid > 0 {
                prop_assert_eq!(p.count(Op::Remove), 0);
                prop_assert!(matches!(p.pruning, Pruning::Suspended(_)));
            }
        }

        #[test]
        fn applying_a_plan_twice_changes_nothing_the_second_time(w in world()) {
            let first = run(&w, &w.observed);
            let after = applied(&w, &first);
            let second = run(&w, &after);
            // Held removals stay held; everything else has converged.
            let pending: Vec<_> = second.ops.iter().filter(|(_, op)| *op != Op::Remove).collect();
            prop_assert!(pending.is_empty(), "{:?}", pending);
            if !matches!(first.pruning, Pruning::Suspended(_)) {
                prop_assert_eq!(second.count(Op::Remove), 0);
            }
        }
    }
}
