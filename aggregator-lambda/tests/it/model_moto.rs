//! The metric model and the refused-datum bisection, against moto_server.
//!
//! - Each model publishes exactly its dimension sets and metrics: read back
//!   with the full dimension set of what is expected (right sums), and the
//!   unselected sets and metrics are absent. moto matches a query's
//!   dimensions as a *subset*, so each model publishes into its own
//!   namespace and the assertions say which datums a subset query sums.
//! - A PutMetricData call CloudWatch refuses as invalid (a dimension value
//!   with a control character, refused by the CloudWatch proxy as CloudWatch
//!   does; moto does not check) is bisected until the bad datums are alone:
//!   exactly those are dropped, every other datum reaches moto, and
//!   `DroppedDatums` says how many.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use tailrace_aggregator::clients::Clients;
use tailrace_aggregator::entry::handler::Handler;
use tailrace_aggregator::ingest::decode::Decoder;
use tailrace_aggregator::join::merge::{MetricEntry, MetricKey, Window};
use tailrace_aggregator::join::metadata_source::MetadataSource;
use tailrace_aggregator::publish::calls::Publisher;
use tailrace_aggregator::publish::model::MetricModel;
use tailrace_aggregator::publish::plan::{plan_model, DROPPED_DATUMS};
use tailrace_tests::cloudwatch_proxy::{CloudWatchProxy, CwFaults};
use tailrace_tests::{metric_sum, sdk_config_for, Moto};
use tailrace_wire::ClientStats;

const META: &str = "\
ip_or_cidr,application,contact
10.1.0.0/16,shop,shop@example.com
10.2.0.0/16,bank,bank@example.com
";

const MAP: Mapping = &[("10.1.0.5", "shop"), ("10.2.0.9", "bank")];

/// A handler publishing into `namespace` under `model`, every service on moto.
async fn model_handler(
    moto: &Moto,
    namespace: &str,
    model: MetricModel,
) -> anyhow::Result<Handler> {
    let clients = Clients::new(&moto.sdk_config().await);
    let s = settings();
    Ok(Handler::new(
        Decoder::new(&s.raw_format, &s.raw_service, 300)?,
        MetadataSource::new(
            clients.s3.clone(),
            s.metadata.clone().expect("file"),
            Duration::ZERO,
        ),
        Publisher::new(clients.cloudwatch.clone(), namespace)
            .with_retry(quick_retry(3))
            .with_model(model),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_publishes_exactly_its_sets_and_metrics() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    metadata_file(&moto, META).await?;
    let cw = Clients::new(&moto.sdk_config().await).cloudwatch;
    let w = window_ago(2);
    // Two services, two applications and an unknown client; independent totals.
    let web = [
        reqs(5, "10.1.0.5", 200, 100, Some(2_000)),
        reqs(2, "10.1.0.5", 503, 10, Some(90_000)),
        reqs(3, "10.2.0.9", 404, 7, Some(1_000)),
        reqs(1, "192.0.2.1", 200, 1, None),
    ]
    .concat();
    let api = [
        reqs(4, "10.1.0.5", 200, 50, Some(5_000)),
        reqs(6, "10.2.0.9", 200, 2, None),
    ]
    .concat();
    let mut expected = Expected::new();
    expect(&mut expected, w, "web", &web, &lookup(MAP));
    expect(&mut expected, w, "api", &api, &lookup(MAP));
    let batch = [
        record(1, partial("host-a", 1, "web", w, &web).encode()),
        record(2, partial("host-b", 1, "api", w, &api).encode()),
    ];
    let total = |f: &dyn Fn(&(i64, String, String)) -> bool, m: fn(&Expect) -> f64| -> f64 {
        expected
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, e)| m(e))
            .sum()
    };

    // 1. [SourceApplication] only; Requests, Bytes, Latency.
    let ns = "ModelApp";
    let model = MetricModel::parse(Some("SourceApplication"), Some("Requests,Bytes,Latency"))
        .map_err(anyhow::Error::msg)?;
    let out = model_handler(&moto, ns, model).await?.handle(&batch).await;
    assert!(out.failed.is_empty(), "{:?}", out.stats);
    for app in ["shop", "bank", "unknown"] {
        let dims = [("SourceApplication", app)];
        let is_app = |k: &(i64, String, String)| k.2 == app;
        let got = metric_sum(&cw, ns, "Requests", &dims, w, 300).await?;
        assert_eq!(got.0, total(&is_app, |e| e.requests), "Requests {app}");
        assert_eq!(got.1, 1.0, "one rollup datum for {app}");
        let got = metric_sum(&cw, ns, "Bytes", &dims, w, 300).await?;
        assert_eq!(got.0, total(&is_app, |e| e.bytes), "Bytes {app}");
        let got = metric_sum(&cw, ns, "Latency", &dims, w, 300).await?;
        assert_eq!(
            got.1,
            total(&is_app, |e| e.latency_count),
            "Latency count {app}"
        );
        for absent in ["ClientErrors", "ServerErrors"] {
            assert_eq!(
                metric_sum(&cw, ns, absent, &dims, w, 300).await?,
                (0.0, 0.0),
                "{absent} is not selected"
            );
        }
        // No [Service, SourceApplication] datum: the full-set query is empty.
        for service in ["web", "api"] {
            let full = [("Service", service), ("SourceApplication", app)];
            assert_eq!(
                metric_sum(&cw, ns, "Requests", &full, w, 300).await?,
                (0.0, 0.0)
            );
        }
    }
    // No [Service] datum either (a subset query would also find [Service, …]).
    assert_eq!(
        metric_sum(&cw, ns, "Requests", &[("Service", "web")], w, 300).await?,
        (0.0, 0.0)
    );

    // 2. [Service] only; Requests, ServerErrors.
    let ns = "ModelService";
    let model = MetricModel::parse(Some("Service"), Some("Requests,ServerErrors"))
        .map_err(anyhow::Error::msg)?;
    let out = model_handler(&moto, ns, model).await?.handle(&batch).await;
    assert!(out.failed.is_empty(), "{:?}", out.stats);
    for service in ["web", "api"] {
        let dims = [("Service", service)];
        let is_svc = |k: &(i64, String, String)| k.1 == service;
        let got = metric_sum(&cw, ns, "Requests", &dims, w, 300).await?;
        assert_eq!(got.0, total(&is_svc, |e| e.requests), "Requests {service}");
        let got = metric_sum(&cw, ns, "ServerErrors", &dims, w, 300).await?;
        assert_eq!(
            got.0,
            total(&is_svc, |e| e.server_errors),
            "ServerErrors {service}"
        );
        for absent in ["Bytes", "ClientErrors", "Latency"] {
            assert_eq!(
                metric_sum(&cw, ns, absent, &dims, w, 300).await?,
                (0.0, 0.0),
                "{absent}"
            );
        }
    }
    for app in ["shop", "bank", "unknown"] {
        let dims = [("SourceApplication", app)];
        assert_eq!(
            metric_sum(&cw, ns, "Requests", &dims, w, 300).await?,
            (0.0, 0.0),
            "{app}"
        );
    }

    // 3. [Service, SourceApplication] only, every metric: a [SourceApplication]
    // subset query sums exactly those (no rollup), a [Service] one too.
    let ns = "ModelPairs";
    let model =
        MetricModel::parse(Some("Service+SourceApplication"), None).map_err(anyhow::Error::msg)?;
    let out = model_handler(&moto, ns, model).await?.handle(&batch).await;
    assert!(out.failed.is_empty(), "{:?}", out.stats);
    for ((_, service, app), e) in &expected {
        let full = [
            ("Service", service.as_str()),
            ("SourceApplication", app.as_str()),
        ];
        for (metric, want) in [
            ("Requests", e.requests),
            ("Bytes", e.bytes),
            ("ClientErrors", e.client_errors),
            ("ServerErrors", e.server_errors),
        ] {
            assert_eq!(
                metric_sum(&cw, ns, metric, &full, w, 300).await?.0,
                want,
                "{metric} {service} {app}"
            );
        }
        let lat = metric_sum(&cw, ns, "Latency", &full, w, 300).await?;
        assert_eq!(lat.1, e.latency_count, "Latency {service} {app}");
    }
    for app in ["shop", "bank", "unknown"] {
        let is_app = |k: &(i64, String, String)| k.2 == app;
        let got = metric_sum(&cw, ns, "Requests", &[("SourceApplication", app)], w, 300).await?;
        assert_eq!(got.0, total(&is_app, |e| e.requests), "no rollup for {app}");
    }
    let got = metric_sum(&cw, ns, "Requests", &[("Service", "web")], w, 300).await?;
    assert_eq!(
        got.0,
        total(&|k| k.1 == "web", |e| e.requests),
        "no [Service] set"
    );
    Ok(())
}

/// One window's entries for `apps`, `n` requests each (latency on), in
/// service `web`; contributors are the application's index.
fn entries(window: i64, apps: &[String], n: u64) -> Vec<(MetricKey, MetricEntry)> {
    apps.iter()
        .enumerate()
        .map(|(i, app)| {
            let mut stats = ClientStats::default();
            for j in 0..n {
                stats.record(Some(200), 10, Some(1_000 + j * 100));
            }
            (
                MetricKey {
                    window: Window {
                        start: window,
                        secs: 300,
                    },
                    service: Arc::from("web"),
                    application: Arc::from(app.as_str()),
                },
                MetricEntry {
                    stats,
                    contributors: BTreeSet::from([i]),
                },
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_bisected_and_only_the_bad_datums_are_dropped() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let proxy = CloudWatchProxy::start(
        &moto.endpoint(),
        CwFaults {
            refuse_invalid: true,
            ..CwFaults::default()
        },
    )?;
    let via_proxy = Clients::new(&sdk_config_for(&proxy.endpoint()).await).cloudwatch;
    let cw = Clients::new(&moto.sdk_config().await).cloudwatch;
    // 150 applications over two windows, one of them named with a control
    // character that CloudWatch refuses (and our doors would have cleaned:
    // this is the last line of defence). 10 datums per application and
    // window: 3,000 datums, three or more calls.
    let mut apps: Vec<String> = (0..150).map(|i| format!("app-{i:03}")).collect();
    let bad = "bad\u{7}app".to_string();
    apps[77] = bad.clone();
    let (w1, w2) = (window_ago(3), window_ago(2));
    let all: Vec<_> = [entries(w1, &apps, 4), entries(w2, &apps, 6)].concat();
    let refs: Vec<(&MetricKey, &MetricEntry)> = all.iter().map(|(k, e)| (k, e)).collect();
    let plan = plan_model(&refs, &MetricModel::default(), SystemTime::now());
    assert_eq!(plan.datums.len(), 2 * 150 * 10);
    let bad_datums = plan
        .datums
        .iter()
        .filter(|d| {
            d.datum
                .dimensions()
                .iter()
                .any(|x| x.value() == Some(bad.as_str()))
        })
        .count();
    assert_eq!(bad_datums, 2 * 10);

    let publisher = Publisher::new(via_proxy, NAMESPACE).with_retry(quick_retry(3));
    let out = publisher.publish(&plan).await;
    let counts = proxy.counts();
    eprintln!("outcome {out:?}\nproxy {counts:?}");
    assert_eq!(
        out.dropped_datums, bad_datums,
        "only the bad datums are dropped"
    );
    assert!(out.failed_records.is_empty() && out.failed_units.is_empty());
    assert_eq!(out.failed_calls, 0);
    // Every datum but the bad ones was stored, plus the DroppedDatums datum.
    assert_eq!(out.datums, plan.datums.len() - bad_datums + 1);
    // Each refused call was either split or was one bad datum, dropped.
    assert!(counts.refused_invalid > 0);
    assert_eq!(counts.refused_invalid as usize, out.bisections + bad_datums);
    assert_eq!(counts.forwarded as usize, out.calls);
    // Bounded: a run of 10 bad datums in 1,000 costs a few dozen calls.
    assert!(out.bisections < 60, "{}", out.bisections);

    // Read back from moto, the full dimension set: every good application in
    // both windows, and nothing of the bad one.
    let good: Vec<String> = apps.iter().filter(|a| **a != bad).cloned().collect();
    for (w, n) in [(w1, 4.0), (w2, 6.0)] {
        for chunk in good.chunks(100) {
            let sums = sums_by_app(&cw, "Requests", "web", chunk, w).await?;
            let wrong: BTreeMap<_, _> = sums.iter().filter(|(_, v)| **v != n).collect();
            assert!(wrong.is_empty(), "window {w}: {wrong:?}");
        }
        let rollup = metric_sum(
            &cw,
            NAMESPACE,
            "Requests",
            &[("SourceApplication", "app-078")],
            w,
            300,
        )
        .await?;
        assert_eq!(
            rollup.0,
            2.0 * n,
            "both dimension sets of app-078 (moto sums the subset)"
        );
    }
    let none = metric_sum(
        &cw,
        NAMESPACE,
        "Requests",
        &[("SourceApplication", bad.as_str())],
        w2,
        300,
    )
    .await?;
    assert_eq!(none, (0.0, 0.0), "nothing of the refused application");
    // DroppedDatums: dimensionless, at the publish's minute.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let (sum, count) = metric_sum(
        &cw,
        NAMESPACE,
        DROPPED_DATUMS,
        &[],
        now / 60 * 60 - 600,
        1200,
    )
    .await?;
    assert_eq!((sum, count), (bad_datums as f64, 1.0));
    Ok(())
}
