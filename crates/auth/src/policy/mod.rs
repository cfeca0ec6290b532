//! IAM policy documents: parsed and validated as IAM does, then evaluated against
//! requests. Every pattern is compiled at parse time, so evaluation (which runs on
//! every request) only allocates for patterns that contain policy variables.

mod condition;

use serde_json::{Map, Value};

use condition::Condition;

/// A parsed, validated policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a user or role (or a managed policy): no Principal/NotPrincipal;
    /// every statement needs Action or NotAction and Resource or NotResource.
    Identity,
    /// A resource policy (bucket, Lambda function, ECR repository): every statement
    /// needs Principal or NotPrincipal; Resource may be omitted.
    Resource,
    /// A role trust policy: needs Principal, only STS actions, no Resource.
    Trust,
}

/// Why a document was refused, worded as IAM words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedPolicy(pub String);

/// One request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// e.g. `s3:GetObject`; matched case-insensitively against Action patterns.
    pub action: &'a str,
    /// The resource ARN; matched case-sensitively with `*` and `?` wildcards.
    pub resource: &'a str,
    pub principal: &'a PrincipalRef<'a>,
    /// Condition keys (case-insensitive) and their values. Policy variables such as
    /// `${aws:username}` are resolved from here too, so callers supply those keys.
    pub context: &'a [(String, Vec<String>)],
}

/// The caller, as resource and trust policies' Principal elements see it.
#[derive(Debug, Clone, Copy)]
pub struct PrincipalRef<'a> {
    /// The ARNs (and ids) a Principal `{"AWS": ...}` is matched against exactly: for an
    /// assumed-role session both the session and the role ARN. `Federated` and
    /// `CanonicalUser` principals are matched against these too.
    pub aws: &'a [String],
    /// The caller's account: a Principal naming the account matches any of its
    /// identities, but never a service principal.
    pub account: &'a str,
    /// Service principal, e.g. `Some("lambda.amazonaws.com")` when a service calls.
    pub service: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

const SYNTAX_ERROR: &str = "Syntax errors in policy.";
const VERSION_2012: &str = "2012-10-17";
const VERSION_2008: &str = "2008-10-17";
const TOP_LEVEL_KEYS: [&str; 3] = ["Version", "Id", "Statement"];
const STATEMENT_KEYS: [&str; 9] = [
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
];

fn malformed(message: impl Into<String>) -> MalformedPolicy {
    MalformedPolicy(message.into())
}

fn syntax_error() -> MalformedPolicy {
    malformed(SYNTAX_ERROR)
}

impl PolicyKind {
    /// The size quota and the name IAM reports it under.
    fn size_limit(self) -> (usize, &'static str) {
        match self {
            PolicyKind::Identity => (6144, "PolicySize"),
            PolicyKind::Resource => (20480, "PolicySize"),
            PolicyKind::Trust => (2048, "ACLSizePerRole"),
        }
    }
}

impl Policy {
    /// Parses and validates a JSON policy document as IAM does; `kind` says which
    /// rules apply.
    pub fn parse(document: &str, kind: PolicyKind) -> Result<Policy, MalformedPolicy> {
        // IAM does not count whitespace against the size quota.
        let (limit, quota) = kind.size_limit();
        if document.chars().filter(|c| !c.is_whitespace()).count() > limit {
            return Err(malformed(format!(
                "Cannot exceed quota for {quota}: {limit}"
            )));
        }
        let Ok(Value::Object(root)) = serde_json::from_str::<Value>(document) else {
            return Err(syntax_error());
        };
        if root
            .keys()
            .any(|key| !TOP_LEVEL_KEYS.contains(&key.as_str()))
        {
            return Err(syntax_error());
        }
        // Policy variables only exist in the 2012 language; before it `${` is literal.
        let variables = match root.get("Version") {
            None => false,
            Some(Value::String(version)) if version == VERSION_2012 => true,
            Some(Value::String(version)) if version == VERSION_2008 => false,
            Some(_) => return Err(malformed("Invalid Version")),
        };
        if root.get("Id").is_some_and(|id| !id.is_string()) {
            return Err(syntax_error());
        }
        let items = match root.get("Statement") {
            None => return Err(malformed("Missing required field Statement")),
            Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
            Some(item @ Value::Object(_)) => vec![item],
            Some(_) => return Err(syntax_error()),
        };
        let mut sids = Vec::new();
        let mut statements = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(fields) = item else {
                return Err(syntax_error());
            };
            if let Some(sid) = fields.get("Sid") {
                let sid = sid.as_str().ok_or_else(syntax_error)?;
                sids.push(sid);
            }
            statements.push(Statement::parse(fields, kind, variables)?);
        }
        // IAM (unlike S3 or Lambda) restricts statement ids.
        if kind != PolicyKind::Resource {
            if sids
                .iter()
                .any(|sid| !sid.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return Err(malformed(
                    "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
                ));
            }
            if sids
                .iter()
                .enumerate()
                .any(|(i, sid)| !sid.is_empty() && sids[..i].contains(sid))
            {
                return Err(malformed(
                    "Statement IDs (SID) in a single policy must be unique.",
                ));
            }
        }
        Ok(Policy { statements })
    }

    /// How this one policy decides the request: ExplicitDeny if a Deny statement
    /// matches, else Allow if an Allow statement does, else ImplicitDeny.
    pub fn evaluate(&self, request: &Request) -> Decision {
        let mut decision = Decision::ImplicitDeny;
        for statement in &self.statements {
            // Once allowed, only Deny statements can change the answer.
            if statement.allow && decision == Decision::Allow {
                continue;
            }
            if statement.applies(request) {
                if !statement.allow {
                    return Decision::ExplicitDeny;
                }
                decision = Decision::Allow;
            }
        }
        decision
    }
}

/// AWS's evaluation logic within one account: an explicit deny in any policy wins;
/// otherwise an allow in an identity policy or in the resource policy allows.
pub fn evaluate(identity: &[&Policy], resource: Option<&Policy>, request: &Request) -> Decision {
    let mut decision = Decision::ImplicitDeny;
    for policy in identity.iter().copied().chain(resource) {
        match policy.evaluate(request) {
            Decision::ExplicitDeny => return Decision::ExplicitDeny,
            Decision::Allow => decision = Decision::Allow,
            Decision::ImplicitDeny => {}
        }
    }
    decision
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    actions: Set<Pattern>,
    /// Absent in resource policies that omit it (ECR) and in trust policies.
    resources: Option<Set<Pattern>>,
    /// Absent in identity policies.
    principals: Option<Set<PrincipalPattern>>,
    conditions: Vec<Condition>,
}

/// A list from an element or its `Not` twin (Action/NotAction, ...).
#[derive(Debug, Clone)]
struct Set<T> {
    negated: bool,
    items: Vec<T>,
}

impl<T> Set<T> {
    fn matches(&self, test: impl FnMut(&T) -> bool) -> bool {
        self.items.iter().any(test) != self.negated
    }
}

impl Statement {
    fn parse(
        fields: &Map<String, Value>,
        kind: PolicyKind,
        variables: bool,
    ) -> Result<Statement, MalformedPolicy> {
        if fields
            .keys()
            .any(|key| !STATEMENT_KEYS.contains(&key.as_str()))
        {
            return Err(syntax_error());
        }
        let allow = match fields.get("Effect") {
            None => return Err(malformed("Missing required field Effect")),
            Some(Value::String(effect)) if effect == "Allow" => true,
            Some(Value::String(effect)) if effect == "Deny" => false,
            Some(Value::String(effect)) => {
                return Err(malformed(format!("Invalid effect: {effect}")));
            }
            Some(_) => return Err(syntax_error()),
        };

        let (negated, actions) = element(fields, "Action", "NotAction")?
            .filter(|(_, actions)| !actions.is_empty())
            .ok_or_else(|| malformed("Policy statement must contain actions."))?;
        if let Some(action) = actions.iter().find(|action| !valid_action(action)) {
            return Err(malformed(if action.contains(':') {
                format!("Action {action} is not valid.")
            } else {
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
                    .to_owned()
            }));
        }
        if kind == PolicyKind::Trust && actions.iter().any(|action| !is_sts_action(action)) {
            return Err(malformed(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
        let actions = Set {
            negated,
            items: actions
                .iter()
                .map(|action| Pattern::compile(action, Syntax::WILDCARDS))
                .collect(),
        };

        let resources = element(fields, "Resource", "NotResource")?;
        let resources = match (kind, resources) {
            (PolicyKind::Trust, Some((negated, _))) => {
                let field = if negated { "NotResource" } else { "Resource" };
                return Err(malformed(format!("Has prohibited field {field}")));
            }
            (PolicyKind::Identity, None) => {
                return Err(malformed("Missing required field Resource"));
            }
            (_, None) => None,
            (_, Some((_, resources))) if resources.is_empty() => {
                return Err(malformed("Policy statement must contain resources."));
            }
            (_, Some((negated, resources))) => {
                if let Some(resource) = resources
                    .iter()
                    .find(|resource| **resource != "*" && !resource.starts_with("arn:"))
                {
                    return Err(malformed(if variables {
                        format!("Resource {resource} must be in ARN format or \"*\".")
                    } else {
                        "The policy failed legacy parsing".to_owned()
                    }));
                }
                let syntax = Syntax {
                    wildcards: true,
                    variables,
                };
                Some(Set {
                    negated,
                    items: resources
                        .iter()
                        .map(|resource| Pattern::compile(resource, syntax))
                        .collect(),
                })
            }
        };

        let principals = principal_element(fields)?;
        let principals = match (kind, principals) {
            (PolicyKind::Identity, Some(_)) => {
                return Err(malformed("Policy document should not specify a principal."));
            }
            (PolicyKind::Resource | PolicyKind::Trust, None) => {
                return Err(malformed("Missing required field Principal"));
            }
            (_, principals) => principals,
        };

        let conditions = match fields.get("Condition") {
            None => Vec::new(),
            Some(Value::Object(block)) => condition::parse_block(block, variables)?,
            Some(_) => return Err(syntax_error()),
        };

        Ok(Statement {
            allow,
            actions,
            resources,
            principals,
            conditions,
        })
    }

    fn applies(&self, request: &Request) -> bool {
        let context = request.context;
        self.actions
            .matches(|pattern| pattern.matches(request.action, true, context))
            && self.resources.as_ref().is_none_or(|resources| {
                resources.matches(|pattern| pattern.matches(request.resource, false, context))
            })
            && self.principals.as_ref().is_none_or(|principals| {
                principals.matches(|principal| principal.matches(request.principal))
            })
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(context))
    }
}

/// Reads an element that may be given as `name` or `not_name` (not both) as a
/// string or an array of strings; `None` when neither is present.
fn element<'v>(
    fields: &'v Map<String, Value>,
    name: &str,
    not_name: &str,
) -> Result<Option<(bool, Vec<&'v str>)>, MalformedPolicy> {
    match (fields.get(name), fields.get(not_name)) {
        (Some(_), Some(_)) => Err(syntax_error()),
        (Some(value), None) => Ok(Some((false, strings(value)?))),
        (None, Some(value)) => Ok(Some((true, strings(value)?))),
        (None, None) => Ok(None),
    }
}

fn strings(value: &Value) -> Result<Vec<&str>, MalformedPolicy> {
    match value {
        Value::String(text) => Ok(vec![text]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(syntax_error))
            .collect(),
        _ => Err(syntax_error()),
    }
}

/// `service:Action` with wildcards allowed in the action part, or `*`.
fn valid_action(action: &str) -> bool {
    action == "*"
        || action.split_once(':').is_some_and(|(vendor, name)| {
            is_vendor(vendor)
                && !name.is_empty()
                && !name.contains(':')
                && !name.contains(char::is_whitespace)
        })
}

fn is_vendor(vendor: &str) -> bool {
    !vendor.is_empty()
        && vendor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_sts_action(action: &str) -> bool {
    action
        .split_once(':')
        .is_some_and(|(vendor, _)| vendor.eq_ignore_ascii_case("sts"))
}

#[derive(Debug, Clone)]
enum PrincipalPattern {
    /// `"*"` or `{"AWS": "*"}`: everyone, including anonymous callers and services.
    Anyone,
    /// An account id or its root ARN: every identity of the account.
    Account(String),
    /// An exact ARN or id, compared with the caller's `aws` list.
    Exact(String),
    Service(String),
}

fn principal_element(
    fields: &Map<String, Value>,
) -> Result<Option<Set<PrincipalPattern>>, MalformedPolicy> {
    let (negated, value) = match (fields.get("Principal"), fields.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(syntax_error()),
        (Some(value), None) => (false, value),
        (None, Some(value)) => (true, value),
        (None, None) => return Ok(None),
    };
    let invalid = || malformed(format!("Invalid principal in policy: {value}"));
    let items = match value {
        Value::String(star) if star == "*" => vec![PrincipalPattern::Anyone],
        Value::Object(kinds) if !kinds.is_empty() => {
            let mut items = Vec::new();
            for (kind, names) in kinds {
                let names = strings(names)?;
                if names.is_empty() || names.iter().any(|name| name.is_empty()) {
                    return Err(invalid());
                }
                for name in names {
                    items.push(match kind.as_str() {
                        "AWS" if name == "*" => PrincipalPattern::Anyone,
                        "AWS" => aws_principal(name).ok_or_else(invalid)?,
                        "Service" => PrincipalPattern::Service(name.to_owned()),
                        "Federated" | "CanonicalUser" => PrincipalPattern::Exact(name.to_owned()),
                        _ => return Err(invalid()),
                    });
                }
            }
            items
        }
        _ => return Err(invalid()),
    };
    Ok(Some(Set { negated, items }))
}

/// An `AWS` principal: an account id, an ARN, or a unique id (what IAM shows in place
/// of a deleted principal's ARN).
fn aws_principal(name: &str) -> Option<PrincipalPattern> {
    if let Some(account) = root_account(name) {
        return Some(PrincipalPattern::Account(account.to_owned()));
    }
    if is_account_id(name) {
        return Some(PrincipalPattern::Account(name.to_owned()));
    }
    let unique_id = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    (name.starts_with("arn:") || unique_id).then(|| PrincipalPattern::Exact(name.to_owned()))
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The account of `arn:PARTITION:iam::ACCOUNT:root`.
fn root_account(arn: &str) -> Option<&str> {
    let (_partition, rest) = arn.strip_prefix("arn:")?.split_once(':')?;
    let account = rest.strip_prefix("iam::")?.strip_suffix(":root")?;
    is_account_id(account).then_some(account)
}

impl PrincipalPattern {
    fn matches(&self, caller: &PrincipalRef) -> bool {
        match self {
            PrincipalPattern::Anyone => true,
            PrincipalPattern::Account(id) => {
                (caller.service.is_none() && caller.account == id)
                    || caller
                        .aws
                        .iter()
                        .any(|arn| arn == id || root_account(arn) == Some(id))
            }
            PrincipalPattern::Exact(arn) => caller.aws.iter().any(|candidate| candidate == arn),
            PrincipalPattern::Service(name) => caller
                .service
                .is_some_and(|service| service.eq_ignore_ascii_case(name)),
        }
    }
}

/// What a pattern's text may contain beyond literal characters.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    wildcards: bool,
    variables: bool,
}

impl Syntax {
    const WILDCARDS: Syntax = Syntax {
        wildcards: true,
        variables: false,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `*`: any sequence, including an empty one.
    Star,
    /// `?`: exactly one character.
    One,
}

#[derive(Debug, Clone)]
enum Part {
    Atom(Atom),
    Var(Variable),
}

/// `${key}` or `${key, 'default'}`.
#[derive(Debug, Clone)]
struct Variable {
    key: String,
    default: Option<String>,
}

impl Variable {
    fn parse(inner: &str) -> Variable {
        let quoted_default = inner.split_once(',').and_then(|(key, default)| {
            let default = default.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            Some((key.trim(), default))
        });
        match quoted_default {
            Some((key, default)) => Variable {
                key: key.to_owned(),
                default: Some(default.to_owned()),
            },
            None => Variable {
                key: inner.trim().to_owned(),
                default: None,
            },
        }
    }

    /// A multi-valued key cannot stand in for one value, so it resolves like a
    /// missing one.
    fn resolve<'c>(&'c self, context: &'c [(String, Vec<String>)]) -> Option<&'c str> {
        match lookup(context, &self.key) {
            Some([value]) => Some(value),
            _ => self.default.as_deref(),
        }
    }
}

fn lookup<'c>(context: &'c [(String, Vec<String>)], key: &str) -> Option<&'c [String]> {
    context
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, values)| values.as_slice())
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
enum Pattern {
    Plain(Vec<Atom>),
    /// Has policy variables, substituted (as literal text) on every match.
    Templated(Vec<Part>),
}

impl Pattern {
    fn compile(text: &str, syntax: Syntax) -> Pattern {
        Pattern::from_parts(parse_parts(text, syntax))
    }

    fn from_parts(parts: Vec<Part>) -> Pattern {
        let atoms: Option<Vec<Atom>> = parts
            .iter()
            .map(|part| match part {
                Part::Atom(atom) => Some(*atom),
                Part::Var(_) => None,
            })
            .collect();
        match atoms {
            Some(atoms) => Pattern::Plain(atoms),
            None => Pattern::Templated(parts),
        }
    }

    /// Whether the whole of `text` matches; `fold` ignores case. A variable that
    /// cannot be resolved makes the pattern match nothing.
    fn matches(&self, text: &str, fold: bool, context: &[(String, Vec<String>)]) -> bool {
        match self {
            Pattern::Plain(atoms) => wildcard_match(atoms, text, fold),
            Pattern::Templated(parts) => {
                let mut atoms = Vec::with_capacity(parts.len() + 16);
                for part in parts {
                    match part {
                        Part::Atom(atom) => atoms.push(*atom),
                        Part::Var(variable) => match variable.resolve(context) {
                            Some(value) => atoms.extend(value.chars().map(Atom::Char)),
                            None => return false,
                        },
                    }
                }
                wildcard_match(&atoms, text, fold)
            }
        }
    }
}

fn parse_parts(text: &str, syntax: Syntax) -> Vec<Part> {
    let mut parts = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if syntax.variables
            && rest.starts_with("${")
            && let Some(end) = rest.find('}')
        {
            let inner = &rest[2..end];
            rest = &rest[end + 1..];
            // `${*}`, `${?}` and `${$}` are how a policy spells those literally.
            parts.push(match inner {
                "*" => Part::Atom(Atom::Char('*')),
                "?" => Part::Atom(Atom::Char('?')),
                "$" => Part::Atom(Atom::Char('$')),
                _ => Part::Var(Variable::parse(inner)),
            });
            continue;
        }
        rest = &rest[c.len_utf8()..];
        parts.push(Part::Atom(match c {
            '*' if syntax.wildcards => Atom::Star,
            '?' if syntax.wildcards => Atom::One,
            _ => Atom::Char(c),
        }));
    }
    parts
}

fn chars_equal(a: char, b: char, fold: bool) -> bool {
    a == b || (fold && a.to_lowercase().eq(b.to_lowercase()))
}

/// Iterative matcher: on a mismatch, retry from the last `*` with one more
/// character swallowed. Earlier stars never need revisiting, so this is
/// O(pattern × text) at worst with no allocation.
fn wildcard_match(pattern: &[Atom], text: &str, fold: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Pattern index after the last star, and the text index it resumes at.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let Some(c) = text[t..].chars().next() else {
            return pattern[p..].iter().all(|atom| *atom == Atom::Star);
        };
        match pattern.get(p) {
            Some(Atom::Star) => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            Some(Atom::One) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            Some(Atom::Char(expected)) if chars_equal(*expected, c, fold) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((star_p, star_t)) = resume else {
            return false;
        };
        let Some(swallowed) = text[star_t..].chars().next() else {
            return false;
        };
        p = star_p;
        t = star_t + swallowed.len_utf8();
        resume = Some((p, t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012";
    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

    fn parse(document: &str, kind: PolicyKind) -> Policy {
        Policy::parse(document, kind).expect("valid policy")
    }

    fn identity(document: &str) -> Policy {
        parse(document, PolicyKind::Identity)
    }

    fn context(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(key, values)| {
                (
                    (*key).to_owned(),
                    values.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    /// Runs `decide` on a request from alice.
    fn as_alice(
        action: &str,
        resource: &str,
        pairs: &[(&str, &[&str])],
        decide: impl FnOnce(&Request) -> Decision,
    ) -> Decision {
        let aws = vec![ALICE.to_owned()];
        let principal = PrincipalRef {
            aws: &aws,
            account: ACCOUNT,
            service: None,
        };
        let context = context(pairs);
        decide(&Request {
            action,
            resource,
            principal: &principal,
            context: &context,
        })
    }

    fn check(policy: &Policy, action: &str, resource: &str) -> Decision {
        as_alice(action, resource, &[], |request| policy.evaluate(request))
    }

    fn check_with(
        policy: &Policy,
        action: &str,
        resource: &str,
        pairs: &[(&str, &[&str])],
    ) -> Decision {
        as_alice(action, resource, pairs, |request| policy.evaluate(request))
    }

    fn refused(document: &str, kind: PolicyKind) -> String {
        Policy::parse(document, kind)
            .expect_err("document should be refused")
            .0
    }

    #[test]
    fn wildcard_matcher() {
        let matches = |pattern: &str, text: &str| {
            Pattern::compile(pattern, Syntax::WILDCARDS).matches(text, false, &[])
        };
        assert!(matches("*", ""));
        assert!(matches("*", "arn:aws:s3:::b/k"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("??", "éü"));
        assert!(matches("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaab"));
        assert!(!matches("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaa"));
        assert!(matches("ab**", "ab"));
        assert!(!matches("abc", "ab"));
        assert!(!matches("ab", "abc"));
        assert!(!matches("AB", "ab"));
        assert!(Pattern::compile("S3:GET*", Syntax::WILDCARDS).matches("s3:getobject", true, &[]));
    }

    #[test]
    fn amazon_s3_read_only_access() {
        let policy = identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
        );
        let object = "arn:aws:s3:::bucket/key";
        assert_eq!(check(&policy, "s3:GetObject", object), Decision::Allow);
        assert_eq!(check(&policy, "S3:getobject", object), Decision::Allow);
        assert_eq!(
            check(&policy, "s3:ListBucket", "arn:aws:s3:::bucket"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:PutObject", object),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&policy, "s3-object-lambda:GetObject", object),
            Decision::Allow
        );
        assert_eq!(check(&policy, "iam:GetUser", ALICE), Decision::ImplicitDeny);
    }

    #[test]
    fn resource_wildcards_are_case_sensitive() {
        let policy = identity(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::bucket/*","arn:aws:s3:::logs-?"]}}"#,
        );
        assert_eq!(
            check(&policy, "s3:PutObject", "arn:aws:s3:::bucket/a/b.txt"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:PutObject", "arn:aws:s3:::bucket/"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:ListBucket", "arn:aws:s3:::bucket"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&policy, "s3:PutObject", "arn:aws:s3:::Bucket/a"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&policy, "s3:ListBucket", "arn:aws:s3:::logs-1"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:ListBucket", "arn:aws:s3:::logs-12"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_action_and_not_resource() {
        let policy = identity(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","NotAction":"iam:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::public","arn:aws:s3:::public/*"]}]}"#,
        );
        assert_eq!(
            check(&policy, "iam:CreateUser", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&policy, "lambda:InvokeFunction", "*"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::public/x"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::private/x"),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn deny_beats_allow_across_policies() {
        let allow = identity(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        );
        let deny = identity(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}}"#,
        );
        let bucket = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*"}}"#,
            PolicyKind::Resource,
        );
        let decide = |identity: &[&Policy], resource: Option<&Policy>, action: &str| {
            as_alice(action, "arn:aws:s3:::b/k", &[], |request| {
                evaluate(identity, resource, request)
            })
        };
        assert_eq!(decide(&[&allow], None, "s3:GetObject"), Decision::Allow);
        assert_eq!(
            decide(&[&allow, &deny], None, "s3:DeleteObject"),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&deny, &allow], None, "s3:DeleteObject"),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&allow], Some(&bucket), "s3:PutObject"),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&allow], Some(&bucket), "s3:GetObject"),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&deny], None, "s3:GetObject"),
            Decision::ImplicitDeny
        );
        assert_eq!(decide(&[], None, "s3:GetObject"), Decision::ImplicitDeny);
    }

    #[test]
    fn resource_policy_alone_can_allow() {
        let bucket = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            PolicyKind::Resource,
        );
        let decision = as_alice("s3:GetObject", "arn:aws:s3:::b/k", &[], |request| {
            evaluate(&[], Some(&bucket), request)
        });
        assert_eq!(decision, Decision::Allow);
    }

    fn as_principal(
        policy: &Policy,
        aws: &[&str],
        account: &str,
        service: Option<&str>,
    ) -> Decision {
        let aws: Vec<String> = aws.iter().map(|a| (*a).to_owned()).collect();
        let principal = PrincipalRef {
            aws: &aws,
            account,
            service,
        };
        policy.evaluate(&Request {
            action: "lambda:InvokeFunction",
            resource: "arn:aws:lambda:us-east-1:123456789012:function:f",
            principal: &principal,
            context: &[],
        })
    }

    fn function_policy(principal: &str) -> Policy {
        parse(
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"s","Effect":"Allow","Principal":{principal},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:f"}}]}}"#
            ),
            PolicyKind::Resource,
        )
    }

    #[test]
    fn principals_in_resource_policies() {
        let session = [
            "arn:aws:sts::123456789012:assumed-role/deployer/s1",
            "arn:aws:iam::123456789012:role/deployer",
        ];
        let other = ["arn:aws:iam::999999999999:user/mallory"];

        for account in [
            r#"{"AWS":"123456789012"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:root"}"#,
        ] {
            let policy = function_policy(account);
            assert_eq!(
                as_principal(&policy, &[ALICE], ACCOUNT, None),
                Decision::Allow
            );
            assert_eq!(
                as_principal(&policy, &session, ACCOUNT, None),
                Decision::Allow
            );
            assert_eq!(
                as_principal(&policy, &other, "999999999999", None),
                Decision::ImplicitDeny
            );
            assert_eq!(
                as_principal(&policy, &[], ACCOUNT, Some("s3.amazonaws.com")),
                Decision::ImplicitDeny
            );
        }

        let role = function_policy(r#"{"AWS":["arn:aws:iam::123456789012:role/deployer"]}"#);
        assert_eq!(
            as_principal(&role, &session, ACCOUNT, None),
            Decision::Allow
        );
        assert_eq!(
            as_principal(&role, &[ALICE], ACCOUNT, None),
            Decision::ImplicitDeny
        );

        let service = function_policy(r#"{"Service":"s3.amazonaws.com"}"#);
        assert_eq!(
            as_principal(&service, &[], "", Some("s3.amazonaws.com")),
            Decision::Allow
        );
        assert_eq!(
            as_principal(&service, &[], "", Some("sns.amazonaws.com")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            as_principal(&service, &[ALICE], ACCOUNT, None),
            Decision::ImplicitDeny
        );

        for anyone in [r#""*""#, r#"{"AWS":"*"}"#] {
            let policy = function_policy(anyone);
            assert_eq!(
                as_principal(&policy, &other, "999999999999", None),
                Decision::Allow
            );
            assert_eq!(
                as_principal(&policy, &[], "", Some("s3.amazonaws.com")),
                Decision::Allow
            );
        }
    }

    #[test]
    fn not_principal_and_trust_policies() {
        let policy = parse(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
                {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/secret"}]}"#,
            PolicyKind::Resource,
        );
        let get = |aws: &str, resource: &str| {
            let aws = [aws.to_owned()];
            let principal = PrincipalRef {
                aws: &aws,
                account: ACCOUNT,
                service: None,
            };
            policy.evaluate(&Request {
                action: "s3:GetObject",
                resource,
                principal: &principal,
                context: &[],
            })
        };
        assert_eq!(get(ALICE, "arn:aws:s3:::b/secret"), Decision::Allow);
        assert_eq!(
            get(
                "arn:aws:iam::123456789012:user/bob",
                "arn:aws:s3:::b/secret"
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            get("arn:aws:iam::123456789012:user/bob", "arn:aws:s3:::b/open"),
            Decision::Allow
        );

        let trust = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#,
            PolicyKind::Trust,
        );
        let assume = |service: Option<&str>, action: &str| {
            let principal = PrincipalRef {
                aws: &[],
                account: "",
                service,
            };
            trust.evaluate(&Request {
                action,
                resource: "arn:aws:iam::123456789012:role/r",
                principal: &principal,
                context: &[],
            })
        };
        assert_eq!(
            assume(Some("lambda.amazonaws.com"), "sts:AssumeRole"),
            Decision::Allow
        );
        assert_eq!(
            assume(Some("ecs.amazonaws.com"), "sts:AssumeRole"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            assume(Some("lambda.amazonaws.com"), "sts:AssumeRoleWithSAML"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn ecr_repository_policy_without_resource() {
        let policy = parse(
            r#"{"Version":"2008-10-17","Statement":[{"Sid":"pull from anywhere","Effect":"Allow","Principal":{"AWS":["123456789012"]},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
            PolicyKind::Resource,
        );
        assert_eq!(
            check(
                &policy,
                "ecr:BatchGetImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/r"
            ),
            Decision::Allow
        );
        assert_eq!(
            check(
                &policy,
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:123456789012:repository/r"
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn policy_variables() {
        let policy = identity(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":[
                "arn:aws:s3:::home/${aws:username}/*",
                "arn:aws:s3:::shared/${aws:PrincipalTag/team, 'nobody'}/*",
                "arn:aws:s3:::literal/${*}${?}${$}"]}}"#,
        );
        let user: &[(&str, &[&str])] = &[("aws:UserName", &["alice"])];
        assert_eq!(
            check_with(&policy, "s3:GetObject", "arn:aws:s3:::home/alice/f", user),
            Decision::Allow
        );
        assert_eq!(
            check_with(&policy, "s3:GetObject", "arn:aws:s3:::home/bob/f", user),
            Decision::ImplicitDeny
        );
        // Unresolvable: matches nothing, not even a literal `${aws:username}`.
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::home/alice/f"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(
                &policy,
                "s3:GetObject",
                "arn:aws:s3:::home/${aws:username}/f"
            ),
            Decision::ImplicitDeny
        );
        // Substituted text is literal, never a wildcard.
        let star: &[(&str, &[&str])] = &[("aws:username", &["*"])];
        assert_eq!(
            check_with(&policy, "s3:GetObject", "arn:aws:s3:::home/bob/f", star),
            Decision::ImplicitDeny
        );
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::shared/nobody/f"),
            Decision::Allow
        );
        let team: &[(&str, &[&str])] = &[("aws:PrincipalTag/team", &["red"])];
        assert_eq!(
            check_with(&policy, "s3:GetObject", "arn:aws:s3:::shared/red/f", team),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::literal/*?$"),
            Decision::Allow
        );
        assert_eq!(
            check(&policy, "s3:GetObject", "arn:aws:s3:::literal/ab$"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn legacy_version_has_no_variables() {
        for version in [r#""Version":"2008-10-17","#, ""] {
            let policy = identity(&format!(
                r#"{{{version}"Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${{aws:username}}/*"}}}}"#
            ));
            let user: &[(&str, &[&str])] = &[("aws:username", &["alice"])];
            assert_eq!(
                check_with(&policy, "s3:GetObject", "arn:aws:s3:::home/alice/f", user),
                Decision::ImplicitDeny
            );
            assert_eq!(
                check(
                    &policy,
                    "s3:GetObject",
                    "arn:aws:s3:::home/${aws:username}/f"
                ),
                Decision::Allow
            );
        }
    }

    #[test]
    fn malformed_documents() {
        use PolicyKind::{Identity, Resource, Trust};
        let statement =
            |body: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{{{body}}}]}}"#);
        let cases = [
            ("{", Identity, SYNTAX_ERROR),
            ("[]", Identity, SYNTAX_ERROR),
            (
                r#"{"Version":"2012-10-17"}"#,
                Identity,
                "Missing required field Statement",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[]}"#,
                Identity,
                SYNTAX_ERROR,
            ),
            (
                r#"{"Version":"2012-10-18","Statement":[]}"#,
                Identity,
                "Invalid Version",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{},"Extra":1}"#,
                Identity,
                SYNTAX_ERROR,
            ),
            (
                &statement(r#""Action":"s3:*","Resource":"*""#),
                Identity,
                "Missing required field Effect",
            ),
            (
                &statement(r#""Effect":"allow","Action":"s3:*","Resource":"*""#),
                Identity,
                "Invalid effect: allow",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":"*","Foo":1"#),
                Identity,
                SYNTAX_ERROR,
            ),
            (
                &statement(r#""Effect":"Allow","Resource":"*""#),
                Identity,
                "Policy statement must contain actions.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":[],"Resource":"*""#),
                Identity,
                "Policy statement must contain actions.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*""#),
                Identity,
                "Missing required field Resource",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":[]"#),
                Identity,
                "Policy statement must contain resources.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":"bucket""#),
                Identity,
                "Resource bucket must be in ARN format or \"*\".",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket"}}"#,
                Identity,
                "The policy failed legacy parsing",
            ),
            (
                &statement(
                    r#""Effect":"Allow","Action":"s3:*","NotAction":"iam:*","Resource":"*""#,
                ),
                Identity,
                SYNTAX_ERROR,
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"*""#),
                Identity,
                SYNTAX_ERROR,
            ),
            (
                &statement(r#""Effect":"Allow","Action":"GetObject","Resource":"*""#),
                Identity,
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:","Resource":"*""#),
                Identity,
                "Action s3: is not valid.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":5,"Resource":"*""#),
                Identity,
                SYNTAX_ERROR,
            ),
            (
                &statement(r#""Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*""#),
                Identity,
                "Policy document should not specify a principal.",
            ),
            (
                &statement(
                    r#""Effect":"Allow","NotPrincipal":{"AWS":"123456789012"},"Action":"s3:*","Resource":"*""#,
                ),
                Identity,
                "Policy document should not specify a principal.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":"*""#),
                Resource,
                "Missing required field Principal",
            ),
            (
                &statement(r#""Effect":"Allow","Principal":{"AWS":"alice"},"Action":"s3:*""#),
                Resource,
                r#"Invalid principal in policy: {"AWS":"alice"}"#,
            ),
            (
                &statement(r#""Effect":"Allow","Principal":{"Robot":"x"},"Action":"s3:*""#),
                Resource,
                r#"Invalid principal in policy: {"Robot":"x"}"#,
            ),
            (
                &statement(
                    r#""Effect":"Allow","Principal":"arn:aws:iam::123456789012:root","Action":"s3:*""#,
                ),
                Resource,
                r#"Invalid principal in policy: "arn:aws:iam::123456789012:root""#,
            ),
            (
                &statement(
                    r#""Effect":"Allow","Principal":{"Service":"x"},"Action":"sts:AssumeRole","Resource":"*""#,
                ),
                Trust,
                "Has prohibited field Resource",
            ),
            (
                &statement(
                    r#""Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:GetObject""#,
                ),
                Trust,
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"sts:AssumeRole""#),
                Trust,
                "Missing required field Principal",
            ),
            (
                &statement(r#""Sid":"not ok","Effect":"Allow","Action":"s3:*","Resource":"*""#),
                Identity,
                "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"a","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#,
                Identity,
                "Statement IDs (SID) in a single policy must be unique.",
            ),
            (
                &statement(
                    r#""Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEqualz":{"aws:username":"a"}}"#,
                ),
                Identity,
                "Invalid Condition type : StringEqualz",
            ),
            (
                &statement(
                    r#""Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"username":"a"}}"#,
                ),
                Identity,
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ),
            (
                &statement(r#""Effect":"Allow","Action":"s3:*","Resource":"*","Condition":[]"#),
                Identity,
                SYNTAX_ERROR,
            ),
        ];
        for (document, kind, message) in cases {
            assert_eq!(refused(document, kind), message, "{document}");
        }
    }

    #[test]
    fn size_quotas_ignore_whitespace() {
        let padded = format!(
            r#"{{"Version":"2012-10-17",{}"Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"*"}}}}"#,
            " ".repeat(7000)
        );
        assert!(Policy::parse(&padded, PolicyKind::Identity).is_ok());
        let long = |principal: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{{{principal}"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}}}"#,
                "b".repeat(6100)
            )
        };
        assert_eq!(
            refused(&long(""), PolicyKind::Identity),
            "Cannot exceed quota for PolicySize: 6144"
        );
        assert!(Policy::parse(&long(r#""Principal":"*","#), PolicyKind::Resource).is_ok());
        let trust = format!(
            r#"{{"Statement":{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}}}"#,
            "s".repeat(2000)
        );
        assert_eq!(
            refused(&trust, PolicyKind::Trust),
            "Cannot exceed quota for ACLSizePerRole: 2048"
        );
    }

    #[test]
    fn root_account_parsing() {
        assert_eq!(
            root_account("arn:aws:iam::123456789012:root"),
            Some("123456789012")
        );
        assert_eq!(
            root_account("arn:aws-cn:iam::123456789012:root"),
            Some("123456789012")
        );
        assert_eq!(root_account("arn:aws:iam::123456789012:user/root"), None);
        assert_eq!(root_account("arn:aws:iam::12345:root"), None);
        assert_eq!(root_account("arn:aws:iam::123456789012:root:x"), None);
        assert_eq!(root_account("arn:aws:sts::123456789012:root"), None);
    }
}
