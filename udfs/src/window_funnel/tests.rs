use super::*;
use crate::grouped::Grouped;
use crate::grouped::agreement::{assert_paths_agree, lcg};
use datafusion::arrow::array::Array;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{BooleanArray, Int64Array};
use datafusion::logical_expr::GroupsAccumulator;

fn params(steps: u8, window: i64, modes: &str) -> FunnelParams {
    FunnelParams {
        window,
        steps,
        modes: FunnelModes::parse(modes).unwrap(),
    }
}

/// Events as (time, step) with step 0 meaning "no condition"; row ids follow the order.
fn events(list: &[(i64, u64)]) -> Vec<(i64, u64)> {
    let mut out: Vec<(i64, u64)> = list
        .iter()
        .enumerate()
        .map(|(row, &(t, step))| (t, (step << STEP_SHIFT) | row as u64))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn plain_funnel_respects_the_window_boundary() {
    let p = params(3, 10, "");
    assert_eq!(funnel_level(&events(&[(1, 1), (5, 2), (11, 3)]), &p), 3); // 11 = 1 + 10: inside
    assert_eq!(funnel_level(&events(&[(1, 1), (5, 2), (12, 3)]), &p), 2);
    assert_eq!(funnel_level(&events(&[(1, 2), (2, 3)]), &p), 0); // no first step
    assert_eq!(funnel_level(&[], &p), 0);
}

#[test]
fn strict_modes() {
    let dedup = params(3, 10, "strict_deduplication");
    assert_eq!(
        funnel_level(&events(&[(1, 1), (2, 2), (3, 2), (4, 3)]), &dedup),
        2
    );
    let order = params(3, 10, "strict_order");
    assert_eq!(
        funnel_level(&events(&[(1, 1), (2, 2), (3, 0), (4, 3)]), &order),
        2
    );
    let increase = params(2, 10, "strict_increase");
    assert_eq!(funnel_level(&events(&[(1, 1), (1, 2)]), &increase), 1);
    assert_eq!(
        funnel_level(&events(&[(1, 1), (1, 2)]), &params(2, 10, "")),
        2
    );
    assert!(FunnelModes::parse("allow_reentry").is_err());
    assert!(FunnelModes::parse("bogus").is_err());
}

#[test]
fn strict_once_uses_an_event_for_one_step() {
    // One row matches steps 1 and 2: without strict_once it completes two steps.
    let row_both = vec![(1, (1 << STEP_SHIFT)), (1, (2 << STEP_SHIFT))];
    assert_eq!(funnel_level(&row_both, &params(2, 10, "")), 2);
    assert_eq!(funnel_level(&row_both, &params(2, 10, "strict_once")), 1);
}

fn groups_for(modes: &str, steps: u8, nullable: bool) -> FunnelGroups {
    FunnelGroups {
        params: params(steps, 5, modes),
        output: FunnelOutput::Level,
        time_type: DataType::Int64,
        time_index: 0,
        nullable,
        events: GroupEvents::default(),
        next_row: 0,
    }
}

#[test]
fn every_path_agrees_in_every_mode() {
    for modes in [
        "",
        "strict_order",
        "strict_deduplication",
        "strict_increase",
        "strict_once",
        "strict_order,allow_reentry",
    ] {
        let mut seed = 7;
        let rows = 400;
        let groups = 12;
        let times: ArrayRef = Arc::new(Int64Array::from_iter((0..rows).map(|_| {
            let v = lcg(&mut seed) % 40;
            (v != 0).then_some(v as i64)
        })));
        let conds: Vec<ArrayRef> = (0..3)
            .map(|_| {
                Arc::new(BooleanArray::from_iter(
                    (0..rows).map(|_| Some(lcg(&mut seed).is_multiple_of(3))),
                )) as ArrayRef
            })
            .collect();
        let group_of: Vec<usize> = (0..rows)
            .map(|_| (lcg(&mut seed) % groups) as usize)
            .collect();
        let mut values = vec![times];
        values.extend(conds);
        for nullable in [true, false] {
            assert_paths_agree(
                &groups_for(modes, 3, nullable),
                &values,
                &group_of,
                groups as usize,
            );
        }
    }
}

#[test]
fn null_rows_are_skipped_and_all_null_groups_are_null() {
    let mut acc = Grouped::new(groups_for("", 2, true));
    let times: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(2), Some(3)]));
    let first: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None, Some(true)]));
    let second: ArrayRef = Arc::new(BooleanArray::from(vec![
        Some(false),
        Some(true),
        Some(false),
    ]));
    acc.update_batch(&[times, first, second], &[0, 0, 0], None, 2)
        .unwrap();
    let levels = acc.evaluate(EmitTo::All).unwrap();
    let levels = levels.as_primitive::<datafusion::arrow::datatypes::UInt8Type>();
    assert_eq!(levels.value(0), 1);
    assert!(
        levels.is_null(1),
        "a group without rows is NULL (nullable arguments)"
    );

    // Non-nullable arguments: a group without rows reached step 0, as in ClickHouse.
    let mut acc = groups_for("", 2, false);
    acc.ensure_groups(1);
    let levels = acc.evaluate(EmitTo::All).unwrap();
    assert_eq!(
        levels
            .as_primitive::<datafusion::arrow::datatypes::UInt8Type>()
            .value(0),
        0
    );
    assert!(levels.is_valid(0));
}

/// The funnel by definition: the longest chain of events, one per step in step order, in
/// (time, step) order, each within `window` of the chain's first. Exponential; for small inputs.
fn reference_level(events: &[(i64, u64)], steps: u8, window: i64) -> u8 {
    fn extend(
        events: &[(i64, u64)],
        from: usize,
        level: u8,
        first: i64,
        steps: u8,
        window: i64,
    ) -> u8 {
        let mut best = level;
        if level == steps {
            return best;
        }
        for j in from..events.len() {
            let (time, key) = events[j];
            if step_of(key) == i64::from(level) && time <= first + window {
                best = best.max(extend(events, j + 1, level + 1, first, steps, window));
            }
        }
        best
    }
    let mut best = 0;
    for (i, &(time, key)) in events.iter().enumerate() {
        if step_of(key) == 0 {
            best = best.max(extend(events, i + 1, 1, time, steps, window));
        }
    }
    best
}

proptest::proptest! {
    /// In the default mode the one-pass algorithm finds the longest chain there is.
    #[test]
    fn default_mode_equals_the_definition(
        raw in proptest::collection::vec((0i64..20, 1u64..=4), 0..12),
        window in 0i64..10,
    ) {
        let sorted = events(&raw);
        let steps = 4;
        let expected = if sorted.is_empty() { 0 } else { reference_level(&sorted, steps, window) };
        proptest::prop_assert_eq!(funnel_level(&sorted, &params(steps, window, "")), expected);
    }
}

proptest::proptest! {
    /// In every mode the step times are one per level, start the funnel, rise, and fit the window.
    #[test]
    fn step_times_agree_with_the_level(
        raw in proptest::collection::vec((0i64..20, 0u64..=3), 0..12),
        window in 0i64..10,
        mode in 0usize..6,
    ) {
        let modes = ["", "strict_order", "strict_deduplication", "strict_increase", "strict_once", "strict_order,allow_reentry"][mode];
        let p = params(3, window, modes);
        let sorted = events(&raw);
        let level = funnel_level(&sorted, &p);
        let times = funnel_step_times(&sorted, &p);
        proptest::prop_assert_eq!(times.len(), usize::from(level));
        if let (Some(first), Some(last)) = (times.first(), times.last()) {
            proptest::prop_assert!(times.is_sorted());
            if level > 1 || p.modes.strict_order {
                proptest::prop_assert!(*last <= first + window);
            }
        }
    }
}
