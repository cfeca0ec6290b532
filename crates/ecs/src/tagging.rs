//! TagResource, UntagResource and ListTagsForResource for clusters, task definitions,
//! tasks and services: every such record keeps its tags as ECS shows them, a list of
//! `{key, value}`.

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use serde_json::{Value, json};

use crate::error::{client, internal, invalid};
use crate::services::SERVICES;
use crate::tasks::TASKS;
use crate::{CLUSTERS, Ecs, TASKDEFS, decode, revision_key};

/// ECS's limit on tags per resource.
const MAX_TAGS: usize = 50;

impl Ecs {
    /// The table and key of the record an ECS ARN names.
    fn tagged_record(&self, arn: &str) -> Result<(&'static str, String), AwsError> {
        let invalid_arn = || invalid(format!("Invalid resource ARN: {arn}"));
        let prefix = format!("arn:aws:ecs:{}:{}:", self.region, self.account);
        let resource = arn.strip_prefix(&prefix).ok_or_else(invalid_arn)?;
        let (kind, name) = resource.split_once('/').ok_or_else(invalid_arn)?;
        Ok(match kind {
            "cluster" => (CLUSTERS, name.to_owned()),
            "task" => (TASKS, name.to_owned()),
            "service" => (SERVICES, name.to_owned()),
            "task-definition" => {
                let (family, revision) = name.rsplit_once(':').ok_or_else(invalid_arn)?;
                let revision = revision.parse().map_err(|_| invalid_arn())?;
                (TASKDEFS, revision_key(family, revision))
            }
            _ => return Err(invalid_arn()),
        })
    }

    /// Applies `edit` to the tags of the resource `arn` names; its tags after.
    fn edit_tags(&self, arn: &str, edit: impl Fn(&mut Vec<Value>)) -> Result<Vec<Value>, AwsError> {
        let (table, key) = self.tagged_record(arn)?;
        loop {
            let record = self
                .meta
                .get(table, &key)
                .map_err(internal)?
                .ok_or_else(|| client("The specified resource could not be found."))?;
            let mut value = decode(&record.value)?;
            let before = value["tags"].as_array().cloned().unwrap_or_default();
            let mut tags = before.clone();
            edit(&mut tags);
            if tags == before {
                return Ok(tags);
            }
            if tags.len() > MAX_TAGS {
                return Err(invalid(format!(
                    "A resource can have at most {MAX_TAGS} tags."
                )));
            }
            value["tags"] = Value::Array(tags.clone());
            let batch = WriteBatch::new().put(
                table,
                &key,
                value.to_string().into_bytes(),
                Expect::Version(record.version),
            );
            match self.meta.commit(batch) {
                Ok(()) => return Ok(tags),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    pub fn tag_resource(&self, input: &Value) -> Result<Value, AwsError> {
        let arn = input["resourceArn"]
            .as_str()
            .ok_or_else(|| invalid("resourceArn is required"))?;
        let new = input["tags"]
            .as_array()
            .ok_or_else(|| invalid("tags is required"))?;
        for tag in new {
            let key = tag["key"].as_str().unwrap_or_default();
            if key.is_empty() || key.len() > 128 || key.to_ascii_lowercase().starts_with("aws:") {
                return Err(invalid(format!("Invalid tag key: {key}")));
            }
            if tag["value"].as_str().is_some_and(|v| v.len() > 256) {
                return Err(invalid(format!("The value of tag {key} is too long.")));
            }
        }
        self.edit_tags(arn, |tags| {
            for tag in new {
                tags.retain(|t| t["key"] != tag["key"]);
                tags.push(json!({ "key": tag["key"], "value": tag["value"].as_str().unwrap_or_default() }));
            }
        })?;
        Ok(json!({}))
    }

    pub fn untag_resource(&self, input: &Value) -> Result<Value, AwsError> {
        let arn = input["resourceArn"]
            .as_str()
            .ok_or_else(|| invalid("resourceArn is required"))?;
        let keys: Vec<&Value> = input["tagKeys"].as_array().into_iter().flatten().collect();
        self.edit_tags(arn, |tags| tags.retain(|t| !keys.contains(&&t["key"])))?;
        Ok(json!({}))
    }

    pub fn list_tags_for_resource(&self, input: &Value) -> Result<Value, AwsError> {
        let arn = input["resourceArn"]
            .as_str()
            .ok_or_else(|| invalid("resourceArn is required"))?;
        let tags = self.edit_tags(arn, |_| {})?;
        Ok(json!({ "tags": tags }))
    }
}
