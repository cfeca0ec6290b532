//! ECR lifecycle policies: which images a policy expires, for previews and for the
//! periodic run that deletes them.
//!
//! As on ECR, rules apply in priority order and an image selected by a rule is never
//! considered by a lower-priority one; images that another manifest holds on to (an
//! index's children, referrers) are left alone.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::store::{ManifestRecord, RegistryError, Store, now};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub rule_priority: i64,
    #[serde(default)]
    pub description: Option<String>,
    pub selection: Selection,
    pub action: Action,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    pub tag_status: String,
    #[serde(default)]
    pub tag_prefix_list: Vec<String>,
    #[serde(default)]
    pub tag_pattern_list: Vec<String>,
    pub count_type: String,
    #[serde(default)]
    pub count_unit: Option<String>,
    pub count_number: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Parses and checks a policy as ECR does, naming what is wrong.
pub fn parse(text: &str) -> Result<Policy, RegistryError> {
    let invalid = |reason: String| {
        RegistryError::InvalidParameter(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '{reason}'"
        ))
    };
    let policy: Policy = serde_json::from_str(text).map_err(|err| invalid(err.to_string()))?;
    if policy.rules.is_empty() {
        return Err(invalid("a policy needs at least one rule".into()));
    }
    let mut priorities = HashSet::new();
    for rule in &policy.rules {
        if rule.rule_priority < 1 || !priorities.insert(rule.rule_priority) {
            return Err(invalid("rulePriority must be unique and positive".into()));
        }
        let selection = &rule.selection;
        match selection.tag_status.as_str() {
            "tagged"
                if selection.tag_prefix_list.is_empty()
                    && selection.tag_pattern_list.is_empty() =>
            {
                return Err(invalid(
                    "tagged rules need tagPrefixList or tagPatternList".into(),
                ));
            }
            "tagged" | "untagged" | "any" => {}
            other => return Err(invalid(format!("unknown tagStatus {other}"))),
        }
        match (
            selection.count_type.as_str(),
            selection.count_unit.as_deref(),
        ) {
            ("imageCountMoreThan", None) | ("sinceImagePushed", Some("days")) => {}
            _ => {
                return Err(invalid(
                    "countType must be imageCountMoreThan, or sinceImagePushed with countUnit days"
                        .into(),
                ));
            }
        }
        if selection.count_number < 1 {
            return Err(invalid("countNumber must be at least 1".into()));
        }
        if rule.action.kind != "expire" {
            return Err(invalid("the only action is expire".into()));
        }
    }
    Ok(policy)
}

/// An image as lifecycle rules see it.
pub struct Image {
    pub manifest: ManifestRecord,
    pub tags: Vec<String>,
}

impl Selection {
    fn selects(&self, image: &Image) -> bool {
        match self.tag_status.as_str() {
            "untagged" => image.tags.is_empty(),
            "any" => true,
            _ => {
                !image.tags.is_empty()
                    && self.tag_prefix_list.iter().all(|prefix| {
                        image
                            .tags
                            .iter()
                            .any(|tag| tag.starts_with(prefix.as_str()))
                    })
                    && self
                        .tag_pattern_list
                        .iter()
                        .all(|pattern| image.tags.iter().any(|tag| wildcard_match(pattern, tag)))
            }
        }
    }
}

/// The images `policy` expires at `at` (Unix seconds), each with the priority of the
/// rule that expires it.
pub fn evaluate<'a>(policy: &Policy, images: &'a [Image], at: f64) -> Vec<(&'a Image, i64)> {
    let mut rules: Vec<&Rule> = policy.rules.iter().collect();
    rules.sort_by_key(|rule| rule.rule_priority);
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut expired = Vec::new();
    for rule in rules {
        let mut selected: Vec<&Image> = images
            .iter()
            .filter(|image| {
                !claimed.contains(image.manifest.digest.as_str()) && rule.selection.selects(image)
            })
            .collect();
        selected.sort_by(|a, b| b.manifest.pushed_at.total_cmp(&a.manifest.pushed_at));
        let count = rule.selection.count_number;
        for (position, image) in selected.into_iter().enumerate() {
            claimed.insert(&image.manifest.digest);
            let expires = match rule.selection.count_type.as_str() {
                "imageCountMoreThan" => position as i64 >= count,
                _ => at - image.manifest.pushed_at > count as f64 * 86_400.0,
            };
            if expires {
                expired.push((image, rule.rule_priority));
            }
        }
    }
    expired
}

/// A repository's images: every manifest nothing else in it holds on to.
pub fn images(store: &Store, repo: &str) -> Result<Vec<Image>, RegistryError> {
    let manifests = store.manifests(repo)?;
    let held: HashSet<String> = manifests
        .iter()
        .flat_map(|manifest| manifest.references.iter().cloned())
        .collect();
    let mut tags: HashMap<String, Vec<String>> = HashMap::new();
    for (tag, digest) in store.tags(repo)? {
        tags.entry(digest).or_default().push(tag);
    }
    Ok(manifests
        .into_iter()
        .filter(|manifest| manifest.subject.is_none() && !held.contains(&manifest.digest))
        .map(|manifest| Image {
            tags: tags.remove(&manifest.digest).unwrap_or_default(),
            manifest,
        })
        .collect())
}

/// Applies every repository's lifecycle policy; returns how many images expired.
pub fn apply_all(store: &Store) -> Result<usize, RegistryError> {
    let mut expired = 0;
    for repo in store.repositories()? {
        let Some(policy) = repo.lifecycle.as_deref().and_then(|text| parse(text).ok()) else {
            continue;
        };
        let images = images(store, &repo.name)?;
        for (image, _) in evaluate(&policy, &images, now()) {
            let digest = image.manifest.digest.parse().map_err(|_| {
                RegistryError::Internal(format!("bad digest {}", image.manifest.digest))
            })?;
            match store.delete_manifest(&repo.name, &digest) {
                Ok(_) | Err(RegistryError::ManifestUnknown(_)) => expired += 1,
                Err(err) => return Err(err),
            }
        }
    }
    Ok(expired)
}

/// `*` for any run of characters and `?` for one, as ECR's `tagPatternList` uses.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(digest: &str, tags: &[&str], pushed_at: f64) -> Image {
        Image {
            manifest: ManifestRecord {
                digest: digest.into(),
                media_type: crate::store::OCI_MANIFEST.into(),
                artifact_type: None,
                annotations: None,
                size: 1,
                image_size: 1,
                pushed_at,
                last_pull: None,
                subject: None,
                references: Vec::new(),
            },
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn rules_apply_in_priority_order_and_claim_their_images() {
        let policy = parse(
            r#"{"rules":[
                {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
                {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}
            ]}"#,
        )
        .unwrap();
        let day = 86_400.0;
        let images = vec![
            image("new-prod", &["prod-2"], 10.0 * day),
            image("old-prod", &["prod-1"], 1.0 * day),
            image("old-dev", &["dev"], 1.0 * day),
            image("fresh", &[], 10.0 * day),
        ];
        let expired: Vec<(&str, i64)> = evaluate(&policy, &images, 10.5 * day)
            .into_iter()
            .map(|(image, rule)| (image.manifest.digest.as_str(), rule))
            .collect();
        assert_eq!(expired, vec![("old-prod", 1), ("old-dev", 2)]);
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        for bad in [
            r#"{"rules":[]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#,
            "not json",
        ] {
            assert!(
                matches!(parse(bad), Err(RegistryError::InvalidParameter(_))),
                "{bad}"
            );
        }
        assert!(wildcard_match("v*-rc", "v1.2-rc"));
        assert!(wildcard_match("prod-*", "prod-1") && !wildcard_match("prod-*", "dev-1"));
        assert!(wildcard_match("a?c*", "abcdef") && wildcard_match("*", ""));
    }
}
