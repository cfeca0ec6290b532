//! The per-request cost of policy evaluation: a user with a realistic policy set
//! (an inline policy with conditions, two AWS managed policies, a customer policy with
//! a deny) plus a function's resource policy, decided for a mix of allowed, denied
//! and implicitly denied requests. Prints ns per decision.
//!
//!   cargo run --release -p nimbus-bench --bin policy

use std::hint::black_box;
use std::time::Instant;

use nimbus_auth::policy::{Policy, PolicyKind, PrincipalRef, Request, evaluate};

const IDENTITY: &[&str] = &[
    r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"ReadPhotos","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],
         "Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/${aws:username}/*"],
         "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.0/24"]},
                      "DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}},
        {"Effect":"Allow","Action":"lambda:InvokeFunction",
         "Resource":"arn:aws:lambda:us-east-1:000000000000:function:thumb*"}]}"#,
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings"],"Resource":"*"}]}"#,
    r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","Action":["s3:DeleteObject","s3:PutObject"],"Resource":"arn:aws:s3:::audit/*"},
        {"Effect":"Allow","NotAction":["iam:*","sts:*"],"Resource":"*",
         "Condition":{"StringEquals":{"aws:PrincipalTag/team":"media"}}}]}"#,
];

const RESOURCE: &str = r#"{"Version":"2012-10-17","Id":"default","Statement":[
    {"Sid":"s3","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction",
     "Resource":"arn:aws:lambda:us-east-1:000000000000:function:thumbnail",
     "Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::photos"}}}]}"#;

fn main() {
    let identity: Vec<Policy> = IDENTITY
        .iter()
        .map(|d| Policy::parse(d, PolicyKind::Identity).expect("valid identity policy"))
        .collect();
    let identity: Vec<&Policy> = identity.iter().collect();
    let resource = Policy::parse(RESOURCE, PolicyKind::Resource).expect("valid resource policy");
    let arns = vec!["arn:aws:iam::000000000000:user/alice".to_owned()];
    let principal = PrincipalRef {
        aws: &arns,
        account: "000000000000",
        service: None,
    };
    let context: Vec<(String, Vec<String>)> = vec![
        ("aws:username".into(), vec!["alice".into()]),
        ("aws:SourceIp".into(), vec!["192.0.2.7".into()]),
        (
            "aws:CurrentTime".into(),
            vec!["2026-11-25T10:00:00Z".into()],
        ),
        ("aws:PrincipalArn".into(), vec![arns[0].clone()]),
    ];
    let requests = [
        ("s3:GetObject", "arn:aws:s3:::photos/alice/cat.jpg", None),
        ("s3:PutObject", "arn:aws:s3:::audit/log", None),
        (
            "lambda:InvokeFunction",
            "arn:aws:lambda:us-east-1:000000000000:function:thumbnail",
            Some(&resource),
        ),
        ("iam:CreateUser", "arn:aws:iam::000000000000:user/bob", None),
        (
            "ecr:BatchGetImage",
            "arn:aws:ecr:us-east-1:000000000000:repository/app",
            None,
        ),
    ];
    let rounds = 200_000;
    let started = Instant::now();
    for _ in 0..rounds {
        for (action, resource, policy) in &requests {
            let request = Request {
                action,
                resource,
                principal: &principal,
                context: &context,
            };
            black_box(evaluate(black_box(&identity), *policy, &request));
        }
    }
    let decisions = rounds * requests.len();
    let ns = started.elapsed().as_nanos() as f64 / decisions as f64;
    println!("{decisions} decisions over 4 identity policies (7 statements) and a function policy");
    println!(
        "{ns:.0} ns per decision ({:.1} M decisions/s on one core)",
        1000.0 / ns
    );
}
