//! The Lambda control plane: functions, code, versions, aliases, concurrency and tags.
//! Every method blocks on the metadata or blob store; the API runs them on blocking
//! threads. Nothing here knows about HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nimbus_auth::Caller;
use nimbus_auth::authz::{Access, Authorizer};
use nimbus_edge::AwsError;
use nimbus_storage::{BlobStore, Expect, StoreError};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::code::{self, CodeCache, CodeError, CodeRef};
use crate::error::{
    conflict, invalid_parameter, not_found, precondition_failed, service, validation,
};
use crate::images::{FunctionImages, ImageCode, ImageRefused, UnpackedImage};
use crate::model::*;
use crate::names::{FunctionRef, function_arn, is_alias_name};
use crate::runtimes;
use crate::store::{FunctionRecord, FunctionStore, FunctionStoreError, VersionRecord, Versioned};

/// Execution roles as IAM knows them: whether Lambda may use one, and temporary
/// credentials for a function's environment.
pub trait ExecutionRoles: Send + Sync {
    /// Why Lambda may not assume `role` (it does not exist, or does not trust
    /// `lambda.amazonaws.com`).
    fn check(&self, role: &str) -> Result<(), String>;
    /// A session of `role` named `session`: access key id, secret and session token.
    fn credentials(&self, role: &str, session: &str) -> Result<(String, String, String), String>;
    /// The principal Lambda acts as when it acts as `role` (writing a function's
    /// invocation records to its destinations); why it cannot assume the role.
    fn session(&self, role: &str) -> Result<Caller, String>;
    /// Whether the role's policies allow `action` on `resource` (Lambda writing a
    /// function's logs as its role, as on AWS).
    fn allows(&self, role: &str, action: &str, resource: &str) -> bool;
}

/// Account-wide limits.
#[derive(Debug, Clone)]
pub struct LambdaSettings {
    /// Concurrent executions across all functions of the account.
    pub account_concurrency: i64,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            account_concurrency: 1000,
        }
    }
}

/// One page of a list operation and the marker of the next.
pub type Listing<T> = (Vec<T>, Option<String>);

/// Reserved concurrency may not push the unreserved pool below this.
pub const MIN_UNRESERVED: i64 = 100;
const MAX_ENV_BYTES: usize = 4096;
const RESERVED_ENV_KEYS: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub(crate) fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
        ))
        .expect("timestamps format")
}

fn revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn store_error(err: FunctionStoreError) -> AwsError {
    match err {
        FunctionStoreError::Store(StoreError::Conflict { .. }) => conflict(
            "The operation cannot be performed at this time. An update is in progress for resource; try again.",
        ),
        other => {
            tracing::error!(error = %other, "lambda metadata store failed");
            service("An internal error occurred while reading or writing function state.")
        }
    }
}

pub(crate) fn code_error(err: CodeError) -> AwsError {
    match err {
        CodeError::Io(detail) => {
            tracing::error!(%detail, "lambda code store failed");
            service("An internal error occurred while storing the function code.")
        }
        other => invalid_parameter(other.to_string()),
    }
}

/// Layer version ARNs resolved to what a function records of them.
pub(crate) struct ResolvedLayers {
    pub(crate) layers: Vec<Layer>,
    pub(crate) code: Vec<CodeRef>,
}

/// What a qualifier designates: the function, and the configuration and code to run.
pub struct Resolved {
    pub record: FunctionRecord,
    pub config: FunctionConfiguration,
    pub code: CodeRef,
    pub layers: Vec<CodeRef>,
    /// The image of a container image function.
    pub image: Option<ImageCode>,
}

fn check_range(member: &str, value: i64, min: i64, max: i64) -> Result<(), AwsError> {
    if value < min {
        return Err(validation(
            member,
            &value.to_string(),
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(validation(
            member,
            &value.to_string(),
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

fn check_environment(env: &EnvironmentVariables) -> Result<(), AwsError> {
    for key in env.variables.keys() {
        let valid = key.len() >= 2
            && key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(validation(
                "environment.variables",
                key,
                "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+",
            ));
        }
    }
    let reserved: Vec<&str> = env
        .variables
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV_KEYS.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(invalid_parameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided \
             contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(",")
        )));
    }
    let measured = serde_json::to_string(&env.variables).expect("variables serialize");
    if measured.len() > MAX_ENV_BYTES {
        return Err(invalid_parameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided \
             exceeded the 4KB limit. String measured: {measured}"
        )));
    }
    Ok(())
}

fn check_role(role: &str) -> Result<(), AwsError> {
    let valid = role
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":role/"))
        .is_some_and(|(account, name)| {
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        });
    if valid {
        Ok(())
    } else {
        Err(validation(
            "role",
            role,
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ))
    }
}

impl FunctionSettings {
    fn validate(&self) -> Result<(), AwsError> {
        if let Some(runtime) = self.runtime.as_deref() {
            runtimes::check(runtime)?;
        }
        if let Some(role) = self.role.as_deref() {
            check_role(role)?;
        }
        if let Some(handler) = self.handler.as_deref()
            && (handler.is_empty()
                || handler.len() > 128
                || handler.chars().any(char::is_whitespace))
        {
            return Err(validation(
                "handler",
                handler,
                "Member must satisfy regular expression pattern: [^\\s]+",
            ));
        }
        if let Some(description) = self.description.as_deref()
            && description.chars().count() > 256
        {
            return Err(validation(
                "description",
                description,
                "Member must have length less than or equal to 256",
            ));
        }
        if let Some(timeout) = self.timeout {
            check_range("timeout", timeout, 1, 900)?;
        }
        if let Some(memory) = self.memory_size {
            check_range("memorySize", memory, 128, 10240)?;
        }
        if let Some(storage) = &self.ephemeral_storage {
            check_range("ephemeralStorage.size", storage.size, 512, 10240)?;
        }
        if let Some(env) = &self.environment {
            check_environment(env)?;
        }
        if let Some(target) = self.dead_letter_target()
            && !target.starts_with("arn:aws:sqs:")
            && !target.starts_with("arn:aws:sns:")
        {
            return Err(invalid_parameter(format!(
                "The dead-letter target {target} is not an SQS queue or an SNS topic ARN"
            )));
        }
        Ok(())
    }

    /// The dead-letter target being set; an empty `TargetArn` removes it.
    fn dead_letter_target(&self) -> Option<&str> {
        self.dead_letter_config
            .as_ref()?
            .target_arn
            .as_deref()
            .filter(|arn| !arn.is_empty())
    }

    fn apply(&self, config: &mut FunctionConfiguration) {
        if let Some(runtime) = self.runtime.as_deref() {
            config.runtime = Some(runtime.to_owned());
        }
        if let Some(role) = self.role.as_deref() {
            config.role = role.to_owned();
        }
        if let Some(handler) = self.handler.as_deref() {
            config.handler = Some(handler.to_owned());
        }
        if let Some(description) = self.description.as_deref() {
            config.description = description.to_owned();
        }
        if let Some(timeout) = self.timeout {
            config.timeout = timeout;
        }
        if let Some(memory) = self.memory_size {
            config.memory_size = memory;
        }
        if let Some(env) = &self.environment {
            config.environment = Some(env.clone());
        }
        if let Some(storage) = &self.ephemeral_storage {
            config.ephemeral_storage = storage.clone();
        }
        if let Some(image_config) = &self.image_config {
            config.image_config_response = Some(ImageConfigResponse {
                image_config: image_config.clone(),
            });
        }
        if self.dead_letter_config.is_some() {
            config.dead_letter_config = self.dead_letter_target().map(|arn| DeadLetterConfig {
                target_arn: Some(arn.to_owned()),
            });
        }
    }
}

fn check_architectures(architectures: Option<&Vec<String>>) -> Result<(), AwsError> {
    let host = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "x86_64"
    };
    match architectures.map(Vec::as_slice) {
        None => Ok(()),
        Some([one]) if one == host => Ok(()),
        Some([one]) if one == "x86_64" || one == "arm64" => Err(invalid_parameter(format!(
            "This nimbus server runs {host} functions only, not {one}"
        ))),
        Some(other) => Err(validation(
            "architectures",
            &format!("{other:?}"),
            "Member must have length less than or equal to 1 and satisfy enum value set: [x86_64, arm64]",
        )),
    }
}

pub(crate) fn parse_version(text: &str) -> Option<u64> {
    text.parse().ok().filter(|v| *v > 0)
}

pub struct Functions {
    pub(crate) store: FunctionStore,
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// Buckets code is read from (`Code.S3Bucket`, as the caller) and invocation
    /// records written to (as the function's role).
    objects: Arc<nimbus_s3::Objects>,
    /// What a principal Lambda acts for or as may do.
    authorizer: Arc<dyn Authorizer>,
    code: CodeCache,
    pub(crate) region: String,
    pub(crate) account: String,
    settings: LambdaSettings,
    pub(crate) roles: Arc<dyn ExecutionRoles>,
    /// Reserved concurrency by function, read from the store on first use and kept
    /// up to date by the calls that change it, so invokes never scan the store.
    reservations: Mutex<Option<HashMap<String, i64>>>,
    /// Where container image functions' images come from; none refuses them.
    images: Option<Arc<dyn FunctionImages>>,
}

impl Functions {
    /// Forgets cached function records: another node changed functions.
    pub fn invalidate_cache(&self) {
        self.store.invalidate();
        *self.reservations.lock().expect("reservations") = None;
    }

    #[allow(clippy::too_many_arguments)] // each is a separate dependency
    pub fn new(
        store: FunctionStore,
        blobs: Arc<dyn BlobStore>,
        objects: Arc<nimbus_s3::Objects>,
        code: CodeCache,
        region: &str,
        account: &str,
        settings: LambdaSettings,
        roles: Arc<dyn ExecutionRoles>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        Self {
            store,
            blobs,
            objects,
            authorizer,
            code,
            region: region.to_owned(),
            account: account.to_owned(),
            settings,
            roles,
            reservations: Mutex::new(None),
            images: None,
        }
    }

    /// Lets functions be container images from `images`.
    pub fn with_images(mut self, images: Arc<dyn FunctionImages>) -> Self {
        self.images = Some(images);
        self
    }

    /// The unpacked image of a container image function.
    pub(crate) fn unpack_image(&self, image: &ImageCode) -> Result<UnpackedImage, String> {
        self.images
            .as_ref()
            .ok_or_else(|| "this nimbus server runs no container images".to_owned())?
            .unpack(&image.resolved_uri)
    }

    /// Pins the image `uri` names to its digest, if `caller` may pull it; refuses it
    /// otherwise as Lambda does.
    fn pin_image(&self, caller: &Caller, uri: &str) -> Result<ImageCode, AwsError> {
        let images = self.images.as_ref().ok_or_else(|| {
            invalid_parameter("Container image functions need an OCI runtime on this nimbus server")
        })?;
        let digest =
            images
                .resolve_as(&caller.principal, uri)
                .map_err(|refused| match refused {
                    ImageRefused::AccessDenied(reason) => {
                        AwsError::new(http::StatusCode::FORBIDDEN, "AccessDeniedException", reason)
                    }
                    ImageRefused::Missing(reason) => {
                        tracing::debug!(%uri, %reason, "refusing a function image");
                        invalid_parameter(format!(
                            "Source image {uri} does not exist. Provide a valid source image."
                        ))
                    }
                })?;
        Ok(ImageCode::new(uri, digest))
    }

    /// Refuses a role Lambda cannot assume, as AWS does.
    fn assumable(&self, role: &str) -> Result<(), AwsError> {
        self.roles.check(role).map_err(|reason| {
            tracing::debug!(%role, %reason, "refusing an execution role");
            invalid_parameter("The role defined for the function cannot be assumed by Lambda.")
        })
    }

    /// Refuses a dead-letter target the execution role may not send to, as Lambda
    /// does when the configuration is set (its own policies; the target's are
    /// applied when a dead letter is sent).
    fn check_dead_letter(&self, role: &str, settings: &FunctionSettings) -> Result<(), AwsError> {
        let Some(target) = settings.dead_letter_target() else {
            return Ok(());
        };
        let (action, call) = if target.starts_with("arn:aws:sqs:") {
            ("sqs:SendMessage", "SendMessage on SQS")
        } else {
            ("sns:Publish", "Publish on SNS")
        };
        let caller = self.as_role(role).map_err(invalid_parameter)?;
        self.authorize_as(&caller, action, target, None)
            .map_err(|_| {
                invalid_parameter(format!(
                    "The provided execution role does not have permissions to call {call}"
                ))
            })
    }

    /// A zip from the request (inline, or an object in one of nimbus's buckets, read
    /// as `caller`), or the reason there is none.
    pub(crate) fn zip_from(
        &self,
        caller: &Caller,
        zip_file: Option<&str>,
        s3_bucket: Option<&str>,
        s3_key: Option<&str>,
        image_uri: Option<&str>,
    ) -> Result<Vec<u8>, AwsError> {
        use base64::Engine as _;
        if image_uri.is_some() {
            return Err(invalid_parameter(
                "Please don't provide ImageUri when updating a function with packageType Zip.",
            ));
        }
        if let Some(bucket) = s3_bucket {
            let key = s3_key.ok_or_else(|| invalid_parameter("S3Key is required with S3Bucket"))?;
            return self.zip_from_s3(caller, bucket, key);
        }
        let encoded = zip_file
            .ok_or_else(|| invalid_parameter("Please provide a source for function code."))?;
        let zip = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| invalid_parameter("ZipFile is not valid base64"))?;
        if zip.len() > code::MAX_ZIP_BYTES {
            return Err(crate::error::too_large(format!(
                "Zipped size must be smaller than {} bytes",
                code::MAX_ZIP_BYTES
            )));
        }
        Ok(zip)
    }

    /// A zip kept in a bucket, read with the caller's own permissions (`s3:GetObject`
    /// on the object, the bucket policy considered) as AWS reads it; it may be larger
    /// than an inline one, up to the unzipped limit.
    fn zip_from_s3(&self, caller: &Caller, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        use std::io::Read as _;
        let (object, mut blob) = self.objects.get_object_as(caller, bucket, key).map_err(
            |err| {
                tracing::debug!(%bucket, %key, reason = %err.detail(), "refusing function code");
                invalid_parameter(format!(
                    "Error occurred while GetObject. S3 Error Code: {}. S3 Error Message: {err}",
                    err.code()
                ))
            },
        )?;
        if object.size > code::MAX_UNZIPPED_BYTES {
            return Err(invalid_parameter(format!(
                "Unzipped size must be smaller than {} bytes",
                code::MAX_UNZIPPED_BYTES
            )));
        }
        let mut zip = Vec::with_capacity(object.size as usize);
        blob.reader
            .read_to_end(&mut zip)
            .map_err(|err| invalid_parameter(format!("Error occurred while GetObject: {err}")))?;
        Ok(zip)
    }

    /// The buckets invocation records can be delivered to.
    pub(crate) fn objects(&self) -> &nimbus_s3::Objects {
        &self.objects
    }

    /// The principal Lambda acts as for a function whose execution role is `role`.
    pub(crate) fn as_role(&self, role: &str) -> Result<Caller, String> {
        self.roles.session(role)
    }

    /// Whether `caller` may invoke `function`: `lambda:InvokeFunction` on it as
    /// qualified, with the function's own policy. What a service acting as a role
    /// (a function's destination, a schedule's target) is held to, as the caller of
    /// Invoke is.
    pub fn authorize_invoke(
        &self,
        caller: &Caller,
        function: &FunctionRef,
    ) -> Result<(), AwsError> {
        let resource = self.arn(&function.name, function.qualifier.as_deref());
        let policy = self.policy_document(&function.name);
        self.authorize_as(
            caller,
            "lambda:InvokeFunction",
            &resource,
            policy.as_deref(),
        )
    }

    /// Whether `caller` may do `action` on `resource` (whose own policy is `policy`).
    pub fn authorize_as(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        policy: Option<&str>,
    ) -> Result<(), AwsError> {
        self.authorizer
            .authorize(
                caller,
                None,
                &Access::new(action, resource).with_policy(policy),
            )
            .map_err(|message| {
                AwsError::new(
                    http::StatusCode::FORBIDDEN,
                    "AccessDeniedException",
                    message,
                )
            })
    }

    pub fn arn(&self, name: &str, qualifier: Option<&str>) -> String {
        function_arn(&self.region, &self.account, name, qualifier)
    }

    fn not_found(&self, name: &str, qualifier: Option<&str>) -> AwsError {
        not_found(format!("Function not found: {}", self.arn(name, qualifier)))
    }

    /// A published version, or `ResourceNotFoundException` naming it as `label`.
    fn published(&self, name: &str, number: u64, label: &str) -> Result<VersionRecord, AwsError> {
        self.store
            .version(name, number)
            .map_err(store_error)?
            .ok_or_else(|| self.not_found(name, Some(label)))
    }

    /// Loads a function's record, lets `change` edit it, and saves it unless
    /// something else wrote it meanwhile (then `ResourceConflictException`, as
    /// Lambda answers a concurrent update).
    pub(crate) fn update_record<T>(
        &self,
        name: &str,
        change: impl FnOnce(&mut FunctionRecord) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let Versioned {
            value: mut record,
            version,
        } = self.load(name)?;
        let changed = change(&mut record)?;
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)?;
        Ok(changed)
    }

    pub(crate) fn load(&self, name: &str) -> Result<Versioned<FunctionRecord>, AwsError> {
        self.store
            .function(name)
            .map_err(store_error)?
            .ok_or_else(|| self.not_found(name, None))
    }

    /// Creates a function; code from a bucket or the registry is read as `caller`.
    pub fn create(
        &self,
        caller: &Caller,
        request: CreateFunctionRequest,
        name: FunctionRef,
    ) -> Result<FunctionConfiguration, AwsError> {
        let name = name.require_unqualified()?.name;
        let package_type = request.package_type.as_deref().unwrap_or("Zip");
        if !matches!(package_type, "Zip" | "Image") {
            return Err(validation(
                "packageType",
                package_type,
                "Member must satisfy enum value set: [Image, Zip]",
            ));
        }
        let is_image = package_type == "Image";
        request.settings.validate()?;
        let role = request
            .settings
            .role
            .as_deref()
            .ok_or_else(|| invalid_parameter("The role parameter is required."))?;
        self.assumable(role)?;
        self.check_dead_letter(role, &request.settings)?;
        let settings = &request.settings;
        if is_image {
            if settings.runtime.is_some() || settings.handler.is_some() {
                return Err(invalid_parameter(
                    "Runtime and Handler are not supported for Image package type functions.",
                ));
            }
            if request.layers.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(invalid_parameter(
                    "Layers are only supported for Zip package type functions.",
                ));
            }
        } else {
            if settings.runtime.is_none() {
                return Err(invalid_parameter(
                    "The runtime parameter is required for Zip package type functions.",
                ));
            }
            if settings.handler.is_none() {
                return Err(invalid_parameter(
                    "The handler parameter is required for Zip package type functions.",
                ));
            }
            check_not_image_config(settings)?;
        }
        check_architectures(request.architectures.as_ref())?;
        let tags = request.tags.clone().unwrap_or_default();
        check_tags(&tags)?;
        let code_in = request.code.clone().unwrap_or_default();
        // An image function keeps the empty archive as its code: the image is its root.
        let (zip, image) = if is_image {
            let uri = code_in.image_uri.as_deref().ok_or_else(|| {
                invalid_parameter("ImageUri is required for Image package type functions.")
            })?;
            (code::EMPTY_ZIP.to_vec(), Some(self.pin_image(caller, uri)?))
        } else {
            let zip = self.zip_from(
                caller,
                code_in.zip_file.as_deref(),
                code_in.s3_bucket.as_deref(),
                code_in.s3_key.as_deref(),
                code_in.image_uri.as_deref(),
            )?;
            (zip, None)
        };
        if self.store.function(&name).map_err(store_error)?.is_some() {
            return Err(conflict(format!("Function already exist: {name}")));
        }
        let layers = self.resolve_layers(request.layers.as_deref().unwrap_or_default())?;
        let code = code::store_zip(self.blobs.as_ref(), &zip).map_err(code_error)?;
        check_unzipped(&code, &layers.code)?;

        let mut config = FunctionConfiguration {
            function_name: name.clone(),
            function_arn: self.arn(&name, None),
            runtime: None,
            role: role.to_owned(),
            handler: None,
            code_size: code.size as i64,
            description: String::new(),
            timeout: 3,
            memory_size: 128,
            last_modified: now_text(),
            code_sha256: code.code_sha256(),
            version: "$LATEST".to_owned(),
            environment: None,
            layers: Some(layers.layers).filter(|l| !l.is_empty()),
            dead_letter_config: None,
            tracing_config: TracingConfig {
                mode: "PassThrough".to_owned(),
            },
            revision_id: revision(),
            state: "Pending".to_owned(),
            state_reason: Some("The function is being created.".to_owned()),
            state_reason_code: Some("Creating".to_owned()),
            last_update_status: "InProgress".to_owned(),
            last_update_status_reason: None,
            last_update_status_reason_code: None,
            package_type: package_type.to_owned(),
            architectures: vec![
                request
                    .architectures
                    .and_then(|a| a.into_iter().next())
                    .unwrap_or_else(|| "x86_64".to_owned()),
            ],
            ephemeral_storage: EphemeralStorage { size: 512 },
            logging_config: LoggingConfig {
                log_format: "Text".to_owned(),
                log_group: format!("/aws/lambda/{name}"),
            },
            runtime_version_config: None,
            image_config_response: None,
        };
        if let Some(image) = &image {
            config.code_size = 0;
            config.code_sha256 = image.code_sha256();
        }
        request.settings.apply(&mut config);
        let record = FunctionRecord {
            policy: Vec::new(),
            event_invoke: Default::default(),
            urls: Default::default(),
            config: config.clone(),
            code,
            layers: layers.code,
            tags,
            reserved_concurrency: None,
            last_version: 0,
            image,
        };
        self.store
            .save(&record, Expect::Absent, None)
            .map_err(|err| match err {
                FunctionStoreError::Store(StoreError::Conflict { .. }) => {
                    conflict(format!("Function already exist: {name}"))
                }
                other => store_error(other),
            })?;
        if request.publish == Some(true) {
            // A version can only be published once the code is unpacked.
            self.settle(&name)?;
            let published = self.publish_version(
                FunctionRef {
                    name,
                    qualifier: None,
                },
                PublishVersionRequest::default(),
            )?;
            return Ok(FunctionConfiguration {
                version: "$LATEST".to_owned(),
                ..published
            });
        }
        Ok(config)
    }

    /// Finishes a create or update: unpacks the code, then marks the function
    /// `Active` and the update `Successful` (or `Failed`, with the reason).
    pub fn settle(&self, name: &str) -> Result<(), AwsError> {
        loop {
            let Some(Versioned {
                value: mut record,
                version,
            }) = self.store.function(name).map_err(store_error)?
            else {
                return Ok(());
            };
            if record.config.state != "Pending" && record.config.last_update_status != "InProgress"
            {
                return Ok(());
            }
            let unpacked = std::iter::once(&record.code)
                .chain(&record.layers)
                .try_for_each(|code| self.code.ensure(self.blobs.as_ref(), code).map(drop))
                .map_err(|err| (err.to_string(), "InvalidZipFileException"))
                .and_then(|()| match &record.image {
                    Some(image) => self
                        .unpack_image(image)
                        .map(drop)
                        .map_err(|err| (err, "ImageAccessDenied")),
                    None => Ok(()),
                });
            let config = &mut record.config;
            match unpacked {
                Ok(_) => {
                    config.state = "Active".to_owned();
                    config.state_reason = None;
                    config.state_reason_code = None;
                    config.last_update_status = "Successful".to_owned();
                    config.last_update_status_reason = None;
                    config.last_update_status_reason_code = None;
                }
                Err((reason, code)) => {
                    if config.state == "Pending" {
                        config.state = "Failed".to_owned();
                        config.state_reason = Some(reason.clone());
                        config.state_reason_code = Some(code.to_owned());
                    }
                    config.last_update_status = "Failed".to_owned();
                    config.last_update_status_reason = Some(reason);
                    config.last_update_status_reason_code = Some(code.to_owned());
                }
            }
            match self.store.save(&record, Expect::Version(version), None) {
                Ok(()) => return Ok(()),
                // Updated meanwhile: settle what is there now.
                Err(FunctionStoreError::Store(StoreError::Conflict { .. })) => continue,
                Err(err) => return Err(store_error(err)),
            }
        }
    }

    /// Functions whose create or update a restart interrupted.
    pub fn unsettled(&self) -> Result<Vec<String>, AwsError> {
        Ok(self
            .store
            .all_functions()
            .map_err(store_error)?
            .into_iter()
            .filter(|r| r.config.state == "Pending" || r.config.last_update_status == "InProgress")
            .map(|r| r.config.function_name)
            .collect())
    }

    /// The configuration and code a qualifier designates: `$LATEST` (or none), a
    /// version number, or an alias (its primary version).
    pub fn resolve(&self, function: &FunctionRef) -> Result<Resolved, AwsError> {
        let record = self.load(&function.name)?.value;
        let version = match function.qualifier.as_deref() {
            None | Some("$LATEST") => None,
            Some(qualifier) => match parse_version(qualifier) {
                Some(version) => Some(version),
                None => {
                    let alias = self
                        .store
                        .alias(&function.name, qualifier)
                        .map_err(store_error)?
                        .ok_or_else(|| self.not_found(&function.name, Some(qualifier)))?;
                    parse_version(&alias.value.function_version)
                }
            },
        };
        let Some(version) = version else {
            return Ok(Resolved {
                config: record.config.clone(),
                code: record.code.clone(),
                layers: record.layers.clone(),
                image: record.image.clone(),
                record,
            });
        };
        let label = function.qualifier.as_deref().unwrap_or_default();
        let published = self.published(&function.name, version, label)?;
        Ok(Resolved {
            record,
            config: published.config,
            code: published.code,
            layers: published.layers,
            image: published.image,
        })
    }

    /// Like [`resolve`](Self::resolve), for running: the function must be `Active`.
    pub fn resolve_active(&self, function: &FunctionRef) -> Result<Resolved, AwsError> {
        let resolved = self.resolve(function)?;
        if resolved.config.state != "Active" {
            return Err(conflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {}",
                resolved.config.state
            )));
        }
        Ok(resolved)
    }

    /// The unpacked code directory of a code package when it is known to be there.
    pub fn ready_dir(&self, code: &CodeRef) -> Option<PathBuf> {
        self.code.ready(code)
    }

    /// The unpacked code directory of a code package.
    pub fn code_dir(&self, code: &CodeRef) -> Result<PathBuf, AwsError> {
        self.code
            .ensure(self.blobs.as_ref(), code)
            .map_err(code_error)
    }

    pub fn list(
        &self,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Listing<FunctionConfiguration>, AwsError> {
        let mut page = self
            .store
            .functions(marker, max_items + 1)
            .map_err(store_error)?;
        let next = (page.len() > max_items).then(|| {
            page.truncate(max_items);
            page.last().map(|r| r.config.function_name.clone())
        });
        Ok((page.into_iter().map(|r| r.config).collect(), next.flatten()))
    }

    /// Replaces a function's code; code from a bucket or the registry is read as
    /// `caller`.
    pub fn update_code(
        &self,
        caller: &Caller,
        function: FunctionRef,
        request: UpdateFunctionCodeRequest,
    ) -> Result<FunctionConfiguration, AwsError> {
        let function = function.require_unqualified()?;
        check_architectures(request.architectures.as_ref())?;
        let Versioned {
            value: mut record,
            version,
        } = self.load(&function.name)?;
        check_revision(request.revision_id.as_deref(), &record.config.revision_id)?;
        check_updatable(&record.config)?;
        if record.image.is_some() {
            let uri = request.image_uri.as_deref().ok_or_else(|| {
                invalid_parameter(
                    "Please provide ImageUri when updating a function with packageType Image.",
                )
            })?;
            let image = self.pin_image(caller, uri)?;
            record.config.code_sha256 = image.code_sha256();
            record.image = Some(image);
        } else {
            let zip = self.zip_from(
                caller,
                request.zip_file.as_deref(),
                request.s3_bucket.as_deref(),
                request.s3_key.as_deref(),
                request.image_uri.as_deref(),
            )?;
            record.code = code::store_zip(self.blobs.as_ref(), &zip).map_err(code_error)?;
            check_unzipped(&record.code, &record.layers)?;
            record.config.code_size = record.code.size as i64;
            record.config.code_sha256 = record.code.code_sha256();
        }
        let config = &mut record.config;
        mark_updating(config);
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)?;
        if request.publish == Some(true) {
            self.settle(&function.name)?;
            let published = self.publish_version(function, PublishVersionRequest::default())?;
            return Ok(FunctionConfiguration {
                version: "$LATEST".to_owned(),
                ..published
            });
        }
        Ok(record.config)
    }

    pub fn update_config(
        &self,
        function: FunctionRef,
        request: UpdateFunctionConfigurationRequest,
    ) -> Result<FunctionConfiguration, AwsError> {
        let function = function.require_unqualified()?;
        request.settings.validate()?;
        let Versioned {
            value: mut record,
            version,
        } = self.load(&function.name)?;
        check_revision(request.revision_id.as_deref(), &record.config.revision_id)?;
        check_updatable(&record.config)?;
        if let Some(role) = request.settings.role.as_deref() {
            self.assumable(role)?;
        }
        let role = request
            .settings
            .role
            .as_deref()
            .unwrap_or(&record.config.role);
        self.check_dead_letter(role, &request.settings)?;
        if record.image.is_none() {
            check_not_image_config(&request.settings)?;
        } else if request.settings.runtime.is_some() || request.settings.handler.is_some() {
            return Err(invalid_parameter(
                "Runtime and Handler are not supported for Image package type functions.",
            ));
        }
        if let Some(arns) = &request.layers {
            let layers = self.resolve_layers(arns)?;
            check_unzipped(&record.code, &layers.code)?;
            record.config.layers = Some(layers.layers).filter(|l| !l.is_empty());
            record.layers = layers.code;
        }
        request.settings.apply(&mut record.config);
        mark_updating(&mut record.config);
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)?;
        Ok(record.config)
    }

    pub fn delete(&self, function: FunctionRef) -> Result<(), AwsError> {
        let loaded = self.load(&function.name)?;
        match function.qualifier.as_deref() {
            None => {
                self.store
                    .delete_function(&function.name, loaded.version)
                    .map_err(store_error)?;
                self.with_reservations(|reservations| reservations.remove(&function.name))?;
                Ok(())
            }
            Some("$LATEST") => Err(invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function.",
            )),
            Some(qualifier) => {
                let number = parse_version(qualifier).ok_or_else(|| {
                    invalid_parameter(
                        "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias",
                    )
                })?;
                self.published(&function.name, number, qualifier)?;
                let aliases = self.store.aliases(&function.name).map_err(store_error)?;
                if let Some(alias) = aliases.iter().find(|a| {
                    a.function_version == qualifier
                        || a.routing_config
                            .as_ref()
                            .is_some_and(|r| r.additional_version_weights.contains_key(qualifier))
                }) {
                    return Err(conflict(format!(
                        "Unable to delete version because the following aliases reference it: [{}]",
                        alias.name
                    )));
                }
                self.store
                    .delete_version(&function.name, number)
                    .map_err(store_error)
            }
        }
    }

    pub fn publish_version(
        &self,
        function: FunctionRef,
        request: PublishVersionRequest,
    ) -> Result<FunctionConfiguration, AwsError> {
        let function = function.require_unqualified()?;
        let Versioned {
            value: mut record,
            version,
        } = self.load(&function.name)?;
        check_revision(request.revision_id.as_deref(), &record.config.revision_id)?;
        if record.config.state != "Active" || record.config.last_update_status != "Successful" {
            return Err(conflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {} (last update {})",
                record.config.state, record.config.last_update_status
            )));
        }
        if let Some(expected) = request.code_sha256.as_deref()
            && expected != record.config.code_sha256
        {
            return Err(precondition_failed(format!(
                "CodeSHA256 ({expected}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the current CodeSHA256.",
                record.config.code_sha256
            )));
        }
        if record.last_version > 0
            && let Some(last) = self
                .store
                .version(&function.name, record.last_version)
                .map_err(store_error)?
            && same_content(&last.config, &record.config)
        {
            return Ok(last.config);
        }
        record.last_version += 1;
        let number = record.last_version.to_string();
        let mut config = record.config.clone();
        config.version = number.clone();
        config.function_arn = self.arn(&function.name, Some(&number));
        config.revision_id = revision();
        if let Some(description) = request.description {
            config.description = description;
        }
        let published = VersionRecord {
            config: config.clone(),
            code: record.code.clone(),
            layers: record.layers.clone(),
            image: record.image.clone(),
        };
        self.store
            .save(&record, Expect::Version(version), Some(&published))
            .map_err(store_error)?;
        Ok(config)
    }

    pub fn list_versions(
        &self,
        function: FunctionRef,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Listing<FunctionConfiguration>, AwsError> {
        let record = self.load(&function.name)?.value;
        let mut out = Vec::new();
        let after = match marker {
            None => {
                out.push(record.config);
                None
            }
            Some(marker) => {
                Some(parse_version(marker).ok_or_else(|| invalid_parameter("Invalid marker"))?)
            }
        };
        let mut versions = self
            .store
            .versions(&function.name, after, max_items + 1)
            .map_err(store_error)?;
        out.extend(versions.drain(..).map(|v| v.config));
        let next = (out.len() > max_items).then(|| {
            out.truncate(max_items);
            out.last().map(|c| c.version.clone())
        });
        Ok((out, next.flatten()))
    }

    fn check_alias_target(
        &self,
        name: &str,
        version: &str,
        routing: Option<&AliasRoutingConfiguration>,
    ) -> Result<(), AwsError> {
        if version != "$LATEST" {
            let number = parse_version(version).ok_or_else(|| {
                validation(
                    "functionVersion",
                    version,
                    "Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)",
                )
            })?;
            self.published(name, number, version)?;
        }
        let Some(routing) = routing else {
            return Ok(());
        };
        let weights = &routing.additional_version_weights;
        if weights.is_empty() {
            return Ok(());
        }
        if weights.len() > 1 {
            return Err(invalid_parameter(
                "Number of items in AdditionalVersionWeights cannot be greater than 1",
            ));
        }
        if version == "$LATEST" {
            return Err(invalid_parameter(
                "$LATEST is not supported for an alias pointing to more than 1 version",
            ));
        }
        for (extra, weight) in weights {
            if !(0.0..=1.0).contains(weight) {
                return Err(validation(
                    "routingConfig.additionalVersionWeights",
                    &weight.to_string(),
                    "Member must have value between 0.0 and 1.0",
                ));
            }
            if extra == version {
                return Err(invalid_parameter(
                    "Alias routing config versions must differ from the alias's primary version",
                ));
            }
            let number = parse_version(extra)
                .ok_or_else(|| invalid_parameter(format!("Invalid function version {extra}")))?;
            self.published(name, number, extra)?;
        }
        Ok(())
    }

    pub fn create_alias(
        &self,
        function: FunctionRef,
        request: CreateAliasRequest,
    ) -> Result<AliasConfiguration, AwsError> {
        let name = function.require_unqualified()?.name;
        if !is_alias_name(&request.name) {
            return Err(validation(
                "name",
                &request.name,
                "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
            ));
        }
        self.load(&name)?;
        self.check_alias_target(
            &name,
            &request.function_version,
            request.routing_config.as_ref(),
        )?;
        let alias = AliasConfiguration {
            alias_arn: self.arn(&name, Some(&request.name)),
            name: request.name.clone(),
            function_version: request.function_version,
            description: request.description.unwrap_or_default(),
            routing_config: request
                .routing_config
                .filter(|r| !r.additional_version_weights.is_empty()),
            revision_id: revision(),
        };
        self.store
            .put_alias(&name, &alias, None)
            .map_err(|err| match err {
                FunctionStoreError::Store(StoreError::Conflict { .. }) => {
                    conflict(format!("Alias already exists: {}", alias.alias_arn))
                }
                other => store_error(other),
            })?;
        Ok(alias)
    }

    fn load_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Versioned<AliasConfiguration>, AwsError> {
        self.load(name)?;
        self.store
            .alias(name, alias)
            .map_err(store_error)?
            .ok_or_else(|| not_found(format!("Alias not found: {}", self.arn(name, Some(alias)))))
    }

    pub fn get_alias(
        &self,
        function: FunctionRef,
        alias: &str,
    ) -> Result<AliasConfiguration, AwsError> {
        Ok(self.load_alias(&function.name, alias)?.value)
    }

    pub fn update_alias(
        &self,
        function: FunctionRef,
        alias: &str,
        request: UpdateAliasRequest,
    ) -> Result<AliasConfiguration, AwsError> {
        let name = function.name;
        let Versioned {
            value: mut current,
            version,
        } = self.load_alias(&name, alias)?;
        check_revision(request.revision_id.as_deref(), &current.revision_id)?;
        if let Some(function_version) = request.function_version {
            current.function_version = function_version;
        }
        if let Some(description) = request.description {
            current.description = description;
        }
        if let Some(routing) = request.routing_config {
            current.routing_config =
                Some(routing).filter(|r| !r.additional_version_weights.is_empty());
        }
        self.check_alias_target(
            &name,
            &current.function_version,
            current.routing_config.as_ref(),
        )?;
        current.revision_id = revision();
        self.store
            .put_alias(&name, &current, Some(version))
            .map_err(store_error)?;
        Ok(current)
    }

    pub fn delete_alias(&self, function: FunctionRef, alias: &str) -> Result<(), AwsError> {
        self.load(&function.name)?;
        self.store
            .delete_alias(&function.name, alias)
            .map_err(store_error)
    }

    pub fn list_aliases(
        &self,
        function: FunctionRef,
        version: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Listing<AliasConfiguration>, AwsError> {
        self.load(&function.name)?;
        let mut aliases: Vec<AliasConfiguration> = self
            .store
            .aliases(&function.name)
            .map_err(store_error)?
            .into_iter()
            .filter(|a| marker.is_none_or(|m| a.name.as_str() > m))
            .filter(|a| version.is_none_or(|v| a.function_version == v))
            .collect();
        let next = (aliases.len() > max_items).then(|| {
            aliases.truncate(max_items);
            aliases.last().map(|a| a.name.clone())
        });
        Ok((aliases, next.flatten()))
    }

    pub fn account_concurrency(&self) -> i64 {
        self.settings.account_concurrency
    }

    /// The concurrency reserved by all functions together.
    pub fn reserved_total(&self) -> Result<i64, AwsError> {
        self.with_reservations(|reservations| reservations.values().sum())
    }

    fn with_reservations<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, i64>) -> R,
    ) -> Result<R, AwsError> {
        let mut guard = self.reservations.lock().expect("reservations");
        if guard.is_none() {
            let reservations = self
                .store
                .all_functions()
                .map_err(store_error)?
                .into_iter()
                .filter_map(|r| {
                    r.reserved_concurrency
                        .map(|reserved| (r.config.function_name, reserved))
                })
                .collect();
            *guard = Some(reservations);
        }
        Ok(f(guard.as_mut().expect("loaded above")))
    }

    /// For an alias with weighted routing, the version `roll` (uniform in [0, 1))
    /// lands on; any other reference is returned as it is.
    pub fn route_alias(&self, function: FunctionRef, roll: f64) -> Result<FunctionRef, AwsError> {
        let Some(alias) = function.qualifier.as_deref().filter(|q| is_alias_name(q)) else {
            return Ok(function);
        };
        let alias = self.load_alias(&function.name, alias)?.value;
        let mut version = alias.function_version.clone();
        if let Some((extra, weight)) = alias
            .routing_config
            .iter()
            .flat_map(|r| r.additional_version_weights.iter())
            .next()
            && roll < *weight
        {
            version = extra.clone();
        }
        Ok(FunctionRef {
            name: function.name,
            qualifier: Some(version),
        })
    }

    pub fn put_concurrency(&self, function: FunctionRef, reserved: i64) -> Result<i64, AwsError> {
        let function = function.require_unqualified()?;
        if reserved < 0 {
            return Err(validation(
                "reservedConcurrentExecutions",
                &reserved.to_string(),
                "Member must have value greater than or equal to 0",
            ));
        }
        let Versioned {
            value: mut record,
            version,
        } = self.load(&function.name)?;
        // The check and the write happen under the reservations lock, so two
        // functions cannot both take the last of the unreserved pool.
        self.with_reservations(|reservations| {
            let elsewhere: i64 = reservations
                .iter()
                .filter(|(name, _)| **name != function.name)
                .map(|(_, reserved)| reserved)
                .sum();
            if self.settings.account_concurrency - elsewhere - reserved < MIN_UNRESERVED {
                return Err(invalid_parameter(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}]."
                )));
            }
            record.reserved_concurrency = Some(reserved);
            self.store.save(&record, Expect::Version(version), None).map_err(store_error)?;
            reservations.insert(function.name.clone(), reserved);
            Ok(reserved)
        })?
    }

    pub fn get_concurrency(&self, function: FunctionRef) -> Result<Option<i64>, AwsError> {
        Ok(self.load(&function.name)?.value.reserved_concurrency)
    }

    pub fn delete_concurrency(&self, function: FunctionRef) -> Result<(), AwsError> {
        let Versioned {
            value: mut record,
            version,
        } = self.load(&function.name)?;
        record.reserved_concurrency = None;
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)?;
        self.with_reservations(|reservations| reservations.remove(&function.name))?;
        Ok(())
    }

    /// The function a tagging ARN names; only whole functions carry tags.
    fn tagged(&self, arn: &str) -> Result<Versioned<FunctionRecord>, AwsError> {
        let function = FunctionRef::parse(arn, &self.region, &self.account)?;
        if !arn.starts_with("arn:") || function.qualifier.is_some() {
            return Err(invalid_parameter(format!(
                "Tags are set on unqualified function ARNs, not {arn}"
            )));
        }
        self.load(&function.name)
    }

    pub fn tag(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<(), AwsError> {
        let Versioned {
            value: mut record,
            version,
        } = self.tagged(arn)?;
        record.tags.extend(tags);
        check_tags(&record.tags)?;
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)
    }

    pub fn untag(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        let Versioned {
            value: mut record,
            version,
        } = self.tagged(arn)?;
        record.tags.retain(|key, _| !keys.contains(key));
        self.store
            .save(&record, Expect::Version(version), None)
            .map_err(store_error)
    }

    pub fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        Ok(self.tagged(arn)?.value.tags)
    }

    pub fn account_settings(&self) -> Result<serde_json::Value, AwsError> {
        let functions = self.store.all_functions().map_err(store_error)?;
        let count = functions.len();
        let total_code: i64 = functions.iter().map(|r| r.config.code_size).sum();
        let reserved: i64 = functions
            .iter()
            .filter_map(|r| r.reserved_concurrency)
            .sum();
        Ok(serde_json::json!({
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800i64,
                "CodeSizeUnzipped": code::MAX_UNZIPPED_BYTES,
                "CodeSizeZipped": code::MAX_ZIP_BYTES,
                "ConcurrentExecutions": self.settings.account_concurrency,
                "UnreservedConcurrentExecutions": self.settings.account_concurrency - reserved,
            },
            "AccountUsage": { "TotalCodeSize": total_code, "FunctionCount": count },
        }))
    }
}

/// Whether two configurations would run the same function (what PublishVersion
/// compares to decide that nothing changed).
fn same_content(a: &FunctionConfiguration, b: &FunctionConfiguration) -> bool {
    a.code_sha256 == b.code_sha256
        && a.runtime == b.runtime
        && a.handler == b.handler
        && a.role == b.role
        && a.timeout == b.timeout
        && a.memory_size == b.memory_size
        && a.environment == b.environment
        && a.layers == b.layers
        && a.ephemeral_storage == b.ephemeral_storage
        && a.dead_letter_config == b.dead_letter_config
        && a.description == b.description
}

fn check_revision(expected: Option<&str>, current: &str) -> Result<(), AwsError> {
    match expected {
        Some(expected) if expected != current => Err(precondition_failed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

/// `ImageConfig` belongs to container image functions only.
fn check_not_image_config(settings: &FunctionSettings) -> Result<(), AwsError> {
    if settings.image_config.is_some() {
        return Err(invalid_parameter(
            "ImageConfig is only supported for Image package type functions.",
        ));
    }
    Ok(())
}

fn check_updatable(config: &FunctionConfiguration) -> Result<(), AwsError> {
    if config.state == "Pending" || config.last_update_status == "InProgress" {
        return Err(conflict(format!(
            "The operation cannot be performed at this time. An update is in progress for resource: {}",
            config.function_arn
        )));
    }
    Ok(())
}

fn mark_updating(config: &mut FunctionConfiguration) {
    config.last_modified = now_text();
    config.revision_id = revision();
    config.last_update_status = "InProgress".to_owned();
    config.last_update_status_reason = Some("The function is being updated.".to_owned());
    config.last_update_status_reason_code = None;
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(invalid_parameter("A function can have at most 50 tags"));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 || key.starts_with("aws:") {
            return Err(invalid_parameter(format!("Invalid tag key: {key}")));
        }
        if value.chars().count() > 256 {
            return Err(invalid_parameter(format!(
                "Tag value for {key} is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

fn check_unzipped(code: &CodeRef, layers: &[CodeRef]) -> Result<(), AwsError> {
    let total: u64 = layers.iter().map(|l| l.unzipped).sum::<u64>() + code.unzipped;
    if total > code::MAX_UNZIPPED_BYTES {
        return Err(invalid_parameter(format!(
            "Function code combined with layers exceeds the maximum allowed size of {} bytes. The actual size is {total} bytes.",
            code::MAX_UNZIPPED_BYTES
        )));
    }
    Ok(())
}
