//! Layers: published versions of shared code that functions unpack beside their own
//! (at `/opt` on AWS), and how a function's `Layers` ARNs resolve.

use std::collections::{BTreeMap, HashSet};

use nimbus_auth::Caller;
use nimbus_edge::AwsError;

use crate::code::{self, CodeRef};
use crate::error::{invalid_parameter, not_found, validation};
use crate::functions::{
    Functions, Listing, ResolvedLayers, code_error, now_text, parse_version, store_error,
};
use crate::model::{Layer, LayerVersion, PublishLayerVersionRequest};
use crate::runtimes;
use crate::store::LayerRecord;

const MAX_LAYERS: usize = 5;

/// `(name, version)` of a layer version ARN.
fn parse_layer_version_arn(arn: &str, region: &str, account: &str) -> Option<(String, u64)> {
    let rest = arn.strip_prefix(&format!("arn:aws:lambda:{region}:{account}:layer:"))?;
    let (name, version) = rest.rsplit_once(':')?;
    Some((name.to_owned(), parse_version(version)?))
}

/// A layer name, or the layer's ARN, as the layer APIs accept it.
pub fn layer_name(input: &str, region: &str, account: &str) -> Result<String, AwsError> {
    let name = input
        .strip_prefix(&format!("arn:aws:lambda:{region}:{account}:layer:"))
        .unwrap_or(input);
    let valid = (1..=140).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(validation(
            "layerName",
            input,
            "Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
        ))
    }
}

impl Functions {
    fn layer_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{name}",
            self.region, self.account
        )
    }

    pub(crate) fn resolve_layers(&self, arns: &[String]) -> Result<ResolvedLayers, AwsError> {
        if arns.len() > MAX_LAYERS {
            return Err(invalid_parameter(format!(
                "Cannot reference more than {MAX_LAYERS} layers."
            )));
        }
        let mut resolved = ResolvedLayers {
            layers: Vec::new(),
            code: Vec::new(),
        };
        let mut names = HashSet::new();
        for arn in arns {
            let record = parse_layer_version_arn(arn, &self.region, &self.account)
                .map(|(name, version)| self.store.layer(&name, version))
                .transpose()
                .map_err(store_error)?
                .flatten()
                .ok_or_else(|| invalid_parameter(format!("Layer version {arn} does not exist.")))?;
            if !names.insert(record.name.clone()) {
                return Err(invalid_parameter(
                    "Two different versions of the same layer are not allowed to be referenced in the same function.",
                ));
            }
            resolved.layers.push(Layer {
                arn: arn.clone(),
                code_size: record.code.size as i64,
            });
            resolved.code.push(record.code);
        }
        Ok(resolved)
    }

    /// Publishes a layer version; content from a bucket is read as `caller`.
    pub fn publish_layer_version(
        &self,
        caller: &Caller,
        name: String,
        request: PublishLayerVersionRequest,
    ) -> Result<(LayerVersion, CodeRef), AwsError> {
        let content = &request.content;
        let zip = self.zip_from(
            caller,
            content.zip_file.as_deref(),
            content.s3_bucket.as_deref(),
            content.s3_key.as_deref(),
            None,
        )?;
        if let Some(runtimes) = &request.compatible_runtimes {
            if runtimes.len() > 15 {
                return Err(validation(
                    "compatibleRuntimes",
                    &format!("{runtimes:?}"),
                    "Member must have length less than or equal to 15",
                ));
            }
            for runtime in runtimes {
                runtimes::check(runtime)?;
            }
        }
        let code = code::store_zip(self.blobs.as_ref(), &zip).map_err(code_error)?;
        let layer_arn = self.layer_arn(&name);
        let record = self
            .store
            .publish_layer(&name, |version| LayerRecord {
                layer: LayerVersion {
                    layer_version_arn: format!("{layer_arn}:{version}"),
                    layer_arn: layer_arn.clone(),
                    description: request.description.clone().unwrap_or_default(),
                    created_date: now_text(),
                    version,
                    compatible_runtimes: request.compatible_runtimes.clone().unwrap_or_default(),
                    license_info: request.license_info.clone(),
                    compatible_architectures: request
                        .compatible_architectures
                        .clone()
                        .unwrap_or_default(),
                },
                name: name.clone(),
                code: code.clone(),
            })
            .map_err(store_error)?;
        Ok((record.layer, record.code))
    }

    pub fn get_layer_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<(LayerVersion, CodeRef), AwsError> {
        let record = self
            .store
            .layer(name, version)
            .map_err(store_error)?
            .ok_or_else(|| {
                not_found(format!(
                    "The resource you requested does not exist. Layer version {}:{version}",
                    self.layer_arn(name)
                ))
            })?;
        Ok((record.layer, record.code))
    }

    pub fn delete_layer_version(&self, name: &str, version: u64) -> Result<(), AwsError> {
        self.store.delete_layer(name, version).map_err(store_error)
    }

    /// Versions of one layer, newest first, as ListLayerVersions pages them.
    pub fn list_layer_versions(
        &self,
        name: &str,
        runtime: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Listing<LayerVersion>, AwsError> {
        let mut versions: Vec<LayerVersion> = self
            .store
            .layers(Some(name))
            .map_err(store_error)?
            .into_iter()
            .map(|record| record.layer)
            .filter(|layer| {
                runtime.is_none_or(|r| layer.compatible_runtimes.iter().any(|c| c == r))
            })
            .collect();
        versions.reverse();
        if let Some(marker) = marker.and_then(parse_version) {
            versions.retain(|layer| layer.version < marker);
        }
        let next = (versions.len() > max_items).then(|| {
            versions.truncate(max_items);
            versions.last().map(|l| l.version.to_string())
        });
        Ok((versions, next.flatten()))
    }

    /// Every layer with its newest (matching) version, by name.
    pub fn list_layers(
        &self,
        runtime: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Listing<(String, LayerVersion)>, AwsError> {
        let mut latest: BTreeMap<String, LayerVersion> = BTreeMap::new();
        for record in self.store.layers(None).map_err(store_error)? {
            if runtime.is_some_and(|r| !record.layer.compatible_runtimes.iter().any(|c| c == r)) {
                continue;
            }
            latest.insert(record.name, record.layer);
        }
        let mut layers: Vec<(String, LayerVersion)> = latest
            .into_iter()
            .filter(|(name, _)| marker.is_none_or(|m| name.as_str() > m))
            .collect();
        let next = (layers.len() > max_items).then(|| {
            layers.truncate(max_items);
            layers.last().map(|(name, _)| name.clone())
        });
        Ok((layers, next.flatten()))
    }
}
