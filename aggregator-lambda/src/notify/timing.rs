//! When a flood is notified, and the lag at which it would never be: the
//! rule behind the stack's `EvaluationPeriods` and the aggregator-lag
//! alarm's threshold (packaging/cloudformation/tailrace.yaml, checked
//! against the constants here by `check_template.py`). Pure arithmetic on
//! CloudWatch's documented evaluation; moto evaluates no alarm.
//!
//! # CloudWatch's evaluation (AWS docs, "Alarm evaluation window", "Limits")
//!
//! - A metric alarm is evaluated **every minute**, also when its period is
//!   longer, over a sliding window of `Period × EvaluationPeriods` that ends
//!   at the evaluation: at 12:15 a 5-minute alarm of 3 periods reads the
//!   periods starting 12:00, 12:05 and 12:10; at 12:16 those starting 12:01,
//!   12:06 and 12:11.
//! - A window's datapoints are all stamped with the window's start `T`
//!   (`publish`), so whichever way the periods fall, one period holds the
//!   whole window and its `Sum` is the window's total. The datapoint is in
//!   the evaluated range at minute `E` iff `E - Period × EvaluationPeriods
//!   ≤ T < E`.
//! - With `DatapointsToAlarm` 1, the first evaluation at or after the
//!   moment the window's total is visible, and still within
//!   `T + Period × EvaluationPeriods`, puts the alarm in `ALARM`. Later, the
//!   window has left every evaluated range: it is never alarmed.
//!
//! # The pipeline's delays
//!
//! A window's last partial leaves the agent when event time passes its end
//! plus `allowed_lateness` (or the idle watermark does), then waits for the
//! event source mapping's batching window, the aggregator's lag behind the
//! stream (`IteratorAge`), the publish, and CloudWatch's ingestion before
//! an alarm sees it. [`Pipeline::STACK`] is the agent's and stack's
//! defaults with generous allowances.
//!
//! # The rule
//!
//! A flood is hidden once the lag exceeds [`AlarmRule::max_lag`]. The
//! aggregator-lag alarm ([`LagAlarm`]) must fire at a smaller lag, so that
//! a person hears "the aggregator is behind; floods may go unalarmed"
//! before any flood does. [`STACK_FLOOD_ALARM`] and [`STACK_LAG_ALARM`] are
//! the stack's settings; the tests below hold the rule for every threshold
//! the stack accepts (up to [`STACK_MAX_LAG_THRESHOLD`]).

/// Seconds from a window's end until CloudWatch can evaluate its last
/// datapoint, besides the aggregator's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    /// The agents' window (their `window`, default 5 min).
    pub window: i64,
    /// The agents' `allowed_lateness` (default 1 min).
    pub allowed_lateness: i64,
    /// From closing the window to Kinesis' acknowledgement (`linger`,
    /// retries).
    pub agent_flush: i64,
    /// The event source mapping's `MaximumBatchingWindowInSeconds`.
    pub batching: i64,
    /// The aggregator's handling and PutMetricData.
    pub publish: i64,
    /// From PutMetricData to the datapoint being evaluated by alarms.
    pub ingestion: i64,
    /// From the alarm's state change to the message in the inbox (SNS, the
    /// notifier's reads, SNS again, e-mail).
    pub notify: i64,
}

impl Pipeline {
    /// The defaults of the agent (`window: 5m`, `allowed_lateness: 1m`)
    /// and of the stack (batching window 5 s), with allowances.
    pub const STACK: Pipeline = Pipeline {
        window: 300,
        allowed_lateness: 60,
        agent_flush: 5,
        batching: 5,
        publish: 5,
        ingestion: 60,
        notify: 30,
    };

    /// When a window starting at `start` becomes visible to alarms, the
    /// aggregator `lag` seconds behind the stream.
    pub fn visible_at(&self, start: i64, lag: i64) -> i64 {
        start
            + self.window
            + self.allowed_lateness
            + self.agent_flush
            + self.batching
            + lag
            + self.publish
            + self.ingestion
    }
}

/// A per-application alarm's evaluation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmRule {
    /// `Period`, seconds.
    pub period: i64,
    /// `EvaluationPeriods`.
    pub evaluation_periods: i64,
    /// `DatapointsToAlarm` (the rule assumes 1: one breaching window).
    pub datapoints_to_alarm: i64,
}

impl AlarmRule {
    /// The minute at which the alarm first counts a window starting at
    /// `start` that is visible from `visible`, or `None` when the window
    /// has left the evaluated range by then.
    pub fn first_evaluation(&self, start: i64, visible: i64) -> Option<i64> {
        let evaluation = visible.div_euclid(60) * 60 + if visible % 60 == 0 { 0 } else { 60 };
        (evaluation <= start + self.period * self.evaluation_periods).then_some(evaluation)
    }

    /// The largest aggregator lag at which a breaching window is still
    /// alarmed (windows start on minutes).
    pub fn max_lag(&self, pipeline: &Pipeline) -> i64 {
        self.period * self.evaluation_periods - pipeline.visible_at(0, 0)
    }

    /// Seconds from a window's end to the message, at aggregator `lag`;
    /// `None` when the window is never alarmed.
    pub fn notified_after_window(&self, pipeline: &Pipeline, lag: i64) -> Option<i64> {
        let start = 0;
        self.first_evaluation(start, pipeline.visible_at(start, lag))
            .map(|e| e + pipeline.notify - (start + pipeline.window))
    }
}

/// The aggregator-lag alarm: Lambda's `IteratorAge` (Maximum per period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagAlarm {
    /// `Period`, seconds.
    pub period: i64,
    /// `EvaluationPeriods` (and `DatapointsToAlarm`: every one breaching).
    pub evaluation_periods: i64,
    /// From a minute's invocations to its `IteratorAge` datapoint being
    /// evaluated.
    pub metric_delay: i64,
}

impl LagAlarm {
    /// The lag when this alarm fires for a lag growing one second per
    /// second past `threshold`: the first breaching period, then
    /// `evaluation_periods` of them, then the metric's delay.
    pub fn lag_when_alarmed(&self, threshold: i64) -> i64 {
        threshold + self.period * self.evaluation_periods + self.metric_delay
    }
}

/// The stack's per-application alarms (`UnknownSourcesAlarm`,
/// `SourceApplicationAlarm`): 5-minute periods, six of them, one breaching
/// window is enough.
pub const STACK_FLOOD_ALARM: AlarmRule = AlarmRule {
    period: 300,
    evaluation_periods: 6,
    datapoints_to_alarm: 1,
};

/// The stack's `IteratorAgeAlarm`: the minute's maximum, three minutes in
/// a row.
pub const STACK_LAG_ALARM: LagAlarm = LagAlarm {
    period: 60,
    evaluation_periods: 3,
    metric_delay: 120,
};

/// The default of the stack's `MaxIteratorAgeSeconds`.
pub const STACK_LAG_THRESHOLD: i64 = 300;
/// The largest `MaxIteratorAgeSeconds` the stack accepts: above it, lag
/// could hide a flood before it is alarmed.
pub const STACK_MAX_LAG_THRESHOLD: i64 = 900;

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings before this rule: 3 periods, and the lag alarm at
    /// 900 s over two 5-minute periods.
    const OLD_FLOOD_ALARM: AlarmRule = AlarmRule {
        period: 300,
        evaluation_periods: 3,
        datapoints_to_alarm: 1,
    };
    const OLD_LAG_ALARM: LagAlarm = LagAlarm {
        period: 300,
        evaluation_periods: 2,
        metric_delay: 120,
    };

    #[test]
    fn a_window_is_counted_at_the_first_evaluation_after_it_is_visible() {
        let r = STACK_FLOOD_ALARM;
        // Window 12:00 (start 0): visible at 12:06:10 -> evaluated 12:07.
        assert_eq!(r.first_evaluation(0, 370), Some(420));
        assert_eq!(r.first_evaluation(0, 420), Some(420));
        // The range of the evaluation at 12:30 still starts at 12:00.
        assert_eq!(r.first_evaluation(0, 1800), Some(1800));
        assert_eq!(r.first_evaluation(0, 1801), None);
        assert_eq!(OLD_FLOOD_ALARM.first_evaluation(0, 901), None);
    }

    /// Arrival times as the aggregator's lag grows: when the message
    /// arrives after the window's end, or never.
    #[test]
    fn notification_time_by_lag() {
        let p = Pipeline::STACK;
        let table: [(i64, Option<i64>, Option<i64>); 7] = [
            // lag, old settings, stack settings (seconds after window end)
            (0, Some(210), Some(210)),
            (60, Some(270), Some(270)),
            (300, Some(510), Some(510)),
            (465, Some(630), Some(630)),
            (466, None, Some(690)),
            (1365, None, Some(1530)),
            (1366, None, None),
        ];
        for (lag, old, new) in table {
            assert_eq!(
                OLD_FLOOD_ALARM.notified_after_window(&p, lag),
                old,
                "old, lag {lag}"
            );
            assert_eq!(
                STACK_FLOOD_ALARM.notified_after_window(&p, lag),
                new,
                "stack, lag {lag}"
            );
        }
        assert_eq!(OLD_FLOOD_ALARM.max_lag(&p), 465);
        assert_eq!(STACK_FLOOD_ALARM.max_lag(&p), 1365);
    }

    #[test]
    fn lag_is_alarmed_before_it_can_hide_a_flood() {
        let p = Pipeline::STACK;
        let hidden_at = STACK_FLOOD_ALARM.max_lag(&p);
        for threshold in [60, STACK_LAG_THRESHOLD, 600, STACK_MAX_LAG_THRESHOLD] {
            let alarmed_at = STACK_LAG_ALARM.lag_when_alarmed(threshold);
            assert!(
                alarmed_at + p.notify < hidden_at,
                "threshold {threshold}: lag alarmed at {alarmed_at} s, floods hidden from {hidden_at} s"
            );
        }
        // The old settings: floods were hidden at 465 s of lag, the lag
        // alarmed at 1,620 s.
        let old_alarmed = OLD_LAG_ALARM.lag_when_alarmed(900);
        assert_eq!(old_alarmed, 1620);
        assert!(old_alarmed > OLD_FLOOD_ALARM.max_lag(&p));
        // Metrics Insights alarms read the latest 3 hours only.
        const { assert!(STACK_FLOOD_ALARM.period * STACK_FLOOD_ALARM.evaluation_periods <= 3 * 3600) };
        const { assert!(STACK_FLOOD_ALARM.datapoints_to_alarm == 1) };
    }
}
