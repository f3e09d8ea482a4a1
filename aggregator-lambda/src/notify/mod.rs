//! The notifier: a CloudWatch alarm state change (as SNS delivers it) in,
//! the message a person reads out, published to the notification topic.
//! The message exists for one moment — a service is flooded and someone must
//! learn whom to call — so it must work the first time, for an application
//! CloudWatch has never listed, and for a source nobody owns.
//!
//! For an alarm about source applications (`SourceApplication` in its
//! dimensions, in a contributor's attributes, or a Metrics Insights query
//! on it), each message names:
//! - the application, from the alarm itself (or, for an alarm-level
//!   notification that names none, every application whose window is above
//!   the threshold in the client tallies or in CloudWatch), and its
//!   contacts from the metadata file — even when nothing else is readable;
//! - the window and its **whole** total, read back from CloudWatch with
//!   `GetMetricData` by the dimension sets the aggregator publishes, not
//!   found through `ListMetrics`, which can miss a new metric for fifteen
//!   minutes ([`totals`]); when no total is readable yet, it says so;
//! - the window's top client addresses with their request counts, across
//!   all hosts and batches, from the client tallies the aggregator wrote as
//!   it published ([`crate::publish::tally`]): exact, or with the stated bound;
//! - for each address, what AWS knows of it ([`owners`]).
//!
//! Any other alarm (pipeline health) is passed on as a short text naming
//! the alarm, its state, the reason and its description.
//!
//! Rooms: [`alarm`] reads CloudWatch's message, [`window`] picks the window,
//! [`message`] writes the text (all three pure); [`totals`] reads
//! CloudWatch, [`owners`] reads EC2, the tallies come from S3
//! (`tally::store`); [`timing`] is the rule behind the stack's alarm
//! settings; [`resend`] sends again what the Lambda could not send (its
//! on-failure queue). This module ties them together and publishes.

pub mod alarm;
pub mod message;
pub mod owners;
pub mod resend;
pub mod tallies;
pub mod timing;
pub mod totals;
pub mod window;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::join::metadata::UNKNOWN;
use crate::join::metadata_source::MetadataSource;
use crate::publish::model::{DimensionSet, MetricModel};
use crate::publish::tally::store::{encode_application, PeriodTallies, TallyKey, TallyStore};
use crate::publish::tally::top_clients;

pub use alarm::{alarm_messages, parse_alarm, parse_time, AlarmChange, DEFAULT_PERIOD};
pub use message::{pipeline_notification, Notification};
pub use window::{evaluation_range, pick_window, WindowTotal};

use message::{application_notification, now_secs, ApplicationReport, ClientsNote, TotalNote};
use owners::OwnerLookup;
use tallies::TallyReads;
use totals::Totals;

/// At most this many applications are named in one alarm's notifications.
pub const MAX_APPLICATIONS: usize = 20;

/// Client addresses listed per message.
pub const TOP_CLIENTS: usize = owners::MAX_ADDRESSES;

/// Why a notification could not be written or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The event or message is not what CloudWatch and SNS send.
    #[error("not a CloudWatch alarm notification: {0}")]
    NotAnAlarm(String),
    /// CloudWatch could not be read.
    #[error("reading {what} from CloudWatch: {message}")]
    CloudWatch {
        /// What was being read.
        what: String,
        /// The error.
        message: String,
    },
    /// The notification topic refused the message.
    #[error("publishing to {topic}: {message}")]
    Publish {
        /// The topic ARN.
        topic: String,
        /// The error.
        message: String,
    },
}

/// Reads totals, tallies, owners and contacts; writes and publishes
/// notifications.
pub struct Notifier {
    cloudwatch: aws_sdk_cloudwatch::Client,
    sns: aws_sdk_sns::Client,
    ec2: Option<aws_sdk_ec2::Client>,
    metadata: MetadataSource,
    namespace: String,
    topic_arn: String,
    model: MetricModel,
    tallies: Option<TallyStore>,
}

/// What one invocation read, shared by its messages: EC2 answers, and the
/// tallies listed and read.
struct Reads {
    owners: OwnerLookup,
    tallies: TallyReads,
}

impl Notifier {
    /// A notifier reading metrics from `namespace` and publishing to
    /// `topic_arn`, for the default metric model, without tallies or EC2
    /// (see the `with_` methods; `clients::build_notifier` sets them all).
    pub fn new(
        cloudwatch: aws_sdk_cloudwatch::Client,
        sns: aws_sdk_sns::Client,
        metadata: MetadataSource,
        namespace: impl Into<String>,
        topic_arn: impl Into<String>,
    ) -> Notifier {
        Notifier {
            cloudwatch,
            sns,
            ec2: None,
            metadata,
            namespace: namespace.into(),
            topic_arn: topic_arn.into(),
            model: MetricModel::default(),
            tallies: None,
        }
    }

    /// Read totals by the dimension sets `model` publishes.
    pub fn with_model(mut self, model: MetricModel) -> Notifier {
        self.model = model;
        self
    }

    /// List the top client addresses from the tallies in `store`.
    pub fn with_tallies(mut self, store: TallyStore) -> Notifier {
        self.tallies = Some(store);
        self
    }

    /// Say what EC2 knows of each listed address.
    pub fn with_owners(mut self, ec2: aws_sdk_ec2::Client) -> Notifier {
        self.ec2 = Some(ec2);
        self
    }

    /// Handle every alarm message of an invocation; the first error fails
    /// the invocation (SNS retries it), after every message was tried.
    pub async fn handle(&self, messages: &[String]) -> Result<Vec<Notification>, NotifyError> {
        let mut reads = self.reads();
        let mut sent = Vec::new();
        let mut first_error = None;
        for m in messages {
            let result = match parse_alarm(m) {
                Ok(change) => self.notify_with(&change, &mut reads).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(mut n) => sent.append(&mut n),
                Err(e) => {
                    tracing::error!(error = %e, "alarm notification not sent");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Write and publish the notifications for one alarm state change.
    pub async fn notify(&self, change: &AlarmChange) -> Result<Vec<Notification>, NotifyError> {
        self.notify_with(change, &mut self.reads()).await
    }

    /// The notifications for one alarm state change, not yet published.
    pub async fn compose(&self, change: &AlarmChange) -> Result<Vec<Notification>, NotifyError> {
        self.compose_with(change, &mut self.reads()).await
    }

    fn reads(&self) -> Reads {
        Reads {
            owners: OwnerLookup::new(self.ec2.clone()),
            tallies: TallyReads::new(self.tallies.clone()),
        }
    }

    async fn notify_with(
        &self,
        change: &AlarmChange,
        reads: &mut Reads,
    ) -> Result<Vec<Notification>, NotifyError> {
        let notes = self.compose_with(change, reads).await?;
        for n in &notes {
            self.publish(n).await?;
            let total = n.total.as_ref();
            tracing::info!(
                alarm = %n.alarm,
                state = %n.state,
                application = n.application.as_deref().unwrap_or(""),
                contact = %n.contact,
                window_start = total.map_or(0, |t| t.window_start),
                window_time = %total.map(|t| tailrace_logformat::rfc3339_utc(t.window_start)).unwrap_or_default(),
                requests = total.map_or(0.0, |t| t.requests),
                threshold = change.threshold.unwrap_or(0.0),
                top_clients = %serde_json::to_string(&n.clients).unwrap_or_default(),
                "notification sent"
            );
        }
        Ok(notes)
    }

    async fn compose_with(
        &self,
        change: &AlarmChange,
        reads: &mut Reads,
    ) -> Result<Vec<Notification>, NotifyError> {
        if !change.is_about_applications() {
            return Ok(vec![pipeline_notification(change)]);
        }
        let (start, end) = evaluation_range(change);
        let read_at = now_secs();
        let listing = reads.tallies.listing(start, end).await;
        let keys: Vec<TallyKey> = match &listing {
            Some(Ok(l)) => l.keys.clone(),
            _ => Vec::new(),
        };
        let named = !change.applications.is_empty();
        let applications = if named {
            change.applications.clone()
        } else {
            self.candidates(change, &keys, reads).await
        };
        let metadata = match self.metadata.current().await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "metadata unreadable: notifications without contacts");
                None
            }
        };
        let totals = Totals {
            cloudwatch: &self.cloudwatch,
            namespace: &self.namespace,
            model: &self.model,
        };
        let period = i64::from(change.period.max(60));
        let mut notes = Vec::new();
        for application in applications {
            let encoded = encode_application(&application);
            // The window the tallies' names point at, and its objects.
            let guess = pick_window(tallies::period_totals(&keys, &application, change), change)
                .map(|w| w.window_start);
            let mut services: BTreeSet<String> = BTreeSet::new();
            if let Some(w) = guess {
                let read = reads.tallies.objects(&keys, &encoded, w, w + period).await;
                services.extend(
                    read.tallies
                        .iter()
                        .flat_map(|t| &t.entries)
                        .map(|e| e.service.clone()),
                );
            }
            if self.model.has_set(DimensionSet::ServiceApplication) {
                match totals.listed_services(&application).await {
                    Ok(listed) => services.extend(listed),
                    Err(e) => {
                        tracing::warn!(error = %e, "ListMetrics failed: services from the tallies only")
                    }
                }
            }
            let cloudwatch = totals
                .window_totals(&application, &services, start, end, change.period)
                .await;
            let (window, total) = match cloudwatch {
                Ok(windows) => match pick_window(windows, change) {
                    Some(w) => (Some((w.window_start, w.window_secs)), TotalNote::Read(w)),
                    None => (
                        None,
                        TotalNote::NotReadable(self.nothing_read(&application, change)),
                    ),
                },
                Err(e) => (None, TotalNote::NotReadable(e.to_string())),
            };
            let window = window.or_else(|| guess.map(|w| (w, change.period)));
            if window.is_none() && !named {
                continue;
            }
            let clients = match window {
                Some((w, _)) => {
                    let read = reads.tallies.objects(&keys, &encoded, w, w + period).await;
                    self.clients_note(reads, &listing, &read, &application)
                        .await
                }
                None => no_window_note(&listing),
            };
            let contact = metadata
                .as_ref()
                .map(|m| m.contacts_of(&application).join("; "))
                .unwrap_or_default();
            notes.push(application_notification(
                change,
                &self.namespace,
                ApplicationReport {
                    application,
                    contact,
                    window,
                    total,
                    clients,
                    read_at,
                },
            ));
            if notes.len() == MAX_APPLICATIONS {
                break;
            }
        }
        if notes.is_empty() {
            // The alarm fired but no application's window is over the
            // threshold any more (or there is no data yet): say so.
            let mut n = pipeline_notification(change);
            n.body.push_str(&format!(
                "\nNo source application has a window above the threshold between {} and {} \
                 in CloudWatch or in the client tallies now.\n",
                tailrace_logformat::rfc3339_utc(start),
                tailrace_logformat::rfc3339_utc(end)
            ));
            notes.push(n);
        }
        Ok(notes)
    }

    /// Why no window of `application` is in CloudWatch's answer.
    fn nothing_read(&self, application: &str, change: &AlarmChange) -> String {
        match self.model.alarm_blind_reason() {
            Some(why) => why,
            None => format!(
                "no datapoint of Requests for SourceApplication={application} above the threshold{} \
                 yet (datapoints arrive after their window closes)",
                change
                    .threshold
                    .map(|t| format!(" {}", message::fmt_count(t)))
                    .unwrap_or_default()
            ),
        }
    }

    /// The applications an alarm that names none may be about: those with
    /// a period above the threshold in the tallies' names, and those
    /// `ListMetrics` lists (best effort).
    async fn candidates(
        &self,
        change: &AlarmChange,
        keys: &[TallyKey],
        reads: &mut Reads,
    ) -> Vec<String> {
        let mut apps: BTreeSet<String> = BTreeSet::new();
        for encoded in tallies::above_threshold(keys, change) {
            if let Some(name) = reads.tallies.application_name(keys, &encoded).await {
                apps.insert(name);
            }
        }
        let totals = Totals {
            cloudwatch: &self.cloudwatch,
            namespace: &self.namespace,
            model: &self.model,
        };
        match totals.listed_applications().await {
            Ok(listed) => apps.extend(listed),
            Err(e) => {
                tracing::warn!(error = %e, "ListMetrics failed: applications from the tallies only")
            }
        }
        if change.excludes_unknown() {
            apps.remove(UNKNOWN);
        }
        apps.into_iter().collect()
    }

    /// The top clients of `application` in the objects `read`.
    async fn clients_note(
        &self,
        reads: &mut Reads,
        listing: &Option<Result<Arc<tallies::Listing>, String>>,
        read: &PeriodTallies,
        application: &str,
    ) -> ClientsNote {
        let top = top_clients(&read.tallies, application, TOP_CLIENTS);
        if top.requests == 0 {
            return match listing {
                None => ClientsNote::NotKept,
                Some(Err(e)) => ClientsNote::Unreadable(e.clone()),
                Some(Ok(l)) => ClientsNote::NoneWritten(format!(
                    "no aggregator batch wrote a tally for {application} in this window to {}{}",
                    reads.tallies.location().unwrap_or_default(),
                    incomplete(read, l)
                )),
            };
        }
        let addresses: Vec<String> = top.clients.iter().map(|(a, _)| a.clone()).collect();
        let owners = reads.owners.owners(&addresses).await;
        ClientsNote::Listed { top, owners }
    }

    async fn publish(&self, n: &Notification) -> Result<(), NotifyError> {
        let err = |e: String| NotifyError::Publish {
            topic: self.topic_arn.clone(),
            message: e,
        };
        let mut req = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&n.subject)
            .message(&n.body);
        if let Some(app) = &n.application {
            let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(app)
                .build()
                .map_err(|e| err(e.to_string()))?;
            req = req.message_attributes("application", attr);
        }
        req.send()
            .await
            .map_err(|e| err(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// What to say of the clients when no window is known.
fn no_window_note(listing: &Option<Result<Arc<tallies::Listing>, String>>) -> ClientsNote {
    match listing {
        None => ClientsNote::NotKept,
        Some(Err(e)) => ClientsNote::Unreadable(e.clone()),
        Some(Ok(_)) => {
            ClientsNote::NoneWritten("no window of this application is in the tallies yet".into())
        }
    }
}

/// `; N tally objects could not be read` and the like, when the read was
/// not whole.
fn incomplete(read: &PeriodTallies, listing: &tallies::Listing) -> String {
    let mut s = String::new();
    if !read.errors.is_empty() {
        s.push_str(&format!(
            "; {} tally objects could not be read",
            read.errors.len()
        ));
    }
    if read.truncated || listing.truncated {
        s.push_str("; more objects than one notification reads");
    }
    s
}
