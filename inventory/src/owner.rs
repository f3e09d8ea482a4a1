//! Who owns an instance: the application and contact written on its rows.
//!
//! Order of precedence, for each of the two values separately:
//! 1. the instance's own tag (default keys `tailrace:application`,
//!    `tailrace:contact`);
//! 2. the same tag on its Auto Scaling group;
//! 3. for the application only, the Auto Scaling group's name.
//!
//! An instance with none of these is not listed (its traffic stays
//! `unknown`, which is what the unknown-source alarm is for).
//!
//! The application becomes a CloudWatch dimension, so it goes through
//! [`sanitize_dimension_value`], the one rule the whole product uses; a value
//! that is blank after it counts as absent. The contact is free text: control
//! characters (a newline would split the CSV row) become spaces and it is
//! trimmed; commas, quotes and non-ASCII are kept (the CSV writer quotes).

use std::borrow::Cow;

use tailrace_wire::dimension::sanitize_dimension_value;

/// Default tag key of the application.
pub const DEFAULT_APPLICATION_TAG: &str = "tailrace:application";
/// Default tag key of the contact.
pub const DEFAULT_CONTACT_TAG: &str = "tailrace:contact";

/// The tag keys the updater reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagKeys {
    /// Key of the application tag.
    pub application: String,
    /// Key of the contact tag.
    pub contact: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        TagKeys {
            application: DEFAULT_APPLICATION_TAG.into(),
            contact: DEFAULT_CONTACT_TAG.into(),
        }
    }
}

/// An Auto Scaling group as far as ownership goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The group's tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// Application and contact of an instance, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The application (an acceptable CloudWatch dimension value).
    pub application: String,
    /// The contact (one line of free text, possibly empty).
    pub contact: String,
}

/// Where an owner's application came from (for logs and the diff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The instance's own tag.
    InstanceTag,
    /// The Auto Scaling group's tag.
    GroupTag,
    /// The Auto Scaling group's name.
    GroupName,
}

/// The owner of an instance, `None` when nothing names one.
///
/// `sanitized` is set when the application had to be repaired to be a
/// CloudWatch dimension value (worth a log line).
pub fn resolve(
    keys: &TagKeys,
    instance_tags: &[(String, String)],
    group: Option<&Group>,
) -> Option<Resolved> {
    let tag = |tags: &[(String, String)], key: &str| -> Option<String> {
        tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let app_candidates = [
        (tag(instance_tags, &keys.application), Source::InstanceTag),
        (
            group.and_then(|g| tag(&g.tags, &keys.application)),
            Source::GroupTag,
        ),
        (group.map(|g| g.name.clone()), Source::GroupName),
    ];
    let (raw, application, source) = app_candidates.into_iter().find_map(|(v, source)| {
        let v = v?;
        let clean = sanitize_dimension_value(&v)?.into_owned();
        Some((v, clean, source))
    })?;
    let contact = [
        tag(instance_tags, &keys.contact),
        group.and_then(|g| tag(&g.tags, &keys.contact)),
    ]
    .into_iter()
    .flatten()
    .map(|c| clean_contact(&c).into_owned())
    .find(|c| !c.is_empty())
    .unwrap_or_default();
    let sanitized = raw.trim() != application;
    Some(Resolved {
        owner: Owner {
            application,
            contact,
        },
        source,
        sanitized,
    })
}

/// An owner with how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The owner.
    pub owner: Owner,
    /// Where the application came from.
    pub source: Source,
    /// True when the application was repaired to be a dimension value.
    pub sanitized: bool,
}

/// A contact as one trimmed line: control characters become spaces.
pub fn clean_contact(value: &str) -> Cow<'_, str> {
    if value.chars().any(char::is_control) {
        let s: String = value
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Cow::Owned(s.trim().to_string())
    } else {
        Cow::Borrowed(value.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn instance_tag_then_group_tag_then_group_name() {
        let keys = TagKeys::default();
        let group = Group {
            name: "web-asg".into(),
            tags: tags(&[
                ("tailrace:application", "web"),
                ("tailrace:contact", "web@x"),
            ]),
        };
        let own = tags(&[("tailrace:application", "checkout")]);
        let r = resolve(&keys, &own, Some(&group)).expect("owner");
        assert_eq!(r.owner.application, "checkout");
        assert_eq!(r.owner.contact, "web@x");
        assert_eq!(r.source, Source::InstanceTag);

        let r = resolve(&keys, &[], Some(&group)).expect("owner");
        assert_eq!(r.owner.application, "web");
        assert_eq!(r.source, Source::GroupTag);

        let bare = Group {
            name: "bare-asg".into(),
            tags: vec![],
        };
        let r = resolve(&keys, &[], Some(&bare)).expect("owner");
        assert_eq!(r.owner.application, "bare-asg");
        assert_eq!(r.owner.contact, "");
        assert_eq!(r.source, Source::GroupName);

        assert_eq!(resolve(&keys, &tags(&[("Name", "x")]), None), None);
    }

    #[test]
    fn custom_keys_and_blank_values_fall_through() {
        let keys = TagKeys {
            application: "app".into(),
            contact: "owner".into(),
        };
        let group = Group {
            name: "g".into(),
            tags: vec![],
        };
        let r = resolve(
            &keys,
            &tags(&[("app", "   "), ("owner", "\n")]),
            Some(&group),
        )
        .expect("owner");
        assert_eq!(r.owner.application, "g");
        assert_eq!(r.owner.contact, "");
    }

    #[test]
    fn application_is_sanitized_like_every_dimension() {
        let keys = TagKeys::default();
        let long = "a".repeat(2000);
        let r = resolve(
            &keys,
            &tags(&[
                ("tailrace:application", &long),
                ("tailrace:contact", "Doe, \"Jane\"\nnight shift"),
            ]),
            None,
        )
        .expect("owner");
        assert_eq!(r.owner.application.len(), 1024);
        assert!(r.sanitized);
        assert_eq!(r.owner.contact, "Doe, \"Jane\" night shift");

        let r = resolve(&keys, &tags(&[("tailrace:application", " café ")]), None).expect("owner");
        assert_eq!(r.owner.application, "caf_");
        assert!(r.sanitized);
        let r = resolve(&keys, &tags(&[("tailrace:application", " ok ")]), None).expect("owner");
        assert_eq!(r.owner.application, "ok");
        assert!(!r.sanitized);
    }
}
