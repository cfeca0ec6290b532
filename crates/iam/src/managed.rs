//! AWS managed policies nimbus provides, by AWS's names, paths and ARNs, with the
//! statements that matter for nimbus's services.

use crate::store::{PolicyRecord, PolicyVersion};

/// (path, name, statements as JSON).
const MANAGED: &[(&str, &str, &str)] = &[
    (
        "/",
        "AdministratorAccess",
        r#"[{"Effect":"Allow","Action":"*","Resource":"*"}]"#,
    ),
    (
        "/",
        "PowerUserAccess",
        r#"[{"Effect":"Allow","NotAction":["iam:*","organizations:*","account:*"],"Resource":"*"},{"Effect":"Allow","Action":["iam:CreateServiceLinkedRole","iam:DeleteServiceLinkedRole","iam:ListRoles","organizations:DescribeOrganization","account:ListRegions"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "IAMFullAccess",
        r#"[{"Effect":"Allow","Action":["iam:*","organizations:DescribeAccount","organizations:DescribeOrganization","organizations:DescribeOrganizationalUnit","organizations:DescribePolicy","organizations:ListChildren","organizations:ListParents","organizations:ListPoliciesForTarget","organizations:ListRoots","organizations:ListPolicies","organizations:ListTargetsForPolicy"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "IAMReadOnlyAccess",
        r#"[{"Effect":"Allow","Action":["iam:GenerateCredentialReport","iam:GenerateServiceLastAccessedDetails","iam:Get*","iam:List*","iam:SimulateCustomPolicy","iam:SimulatePrincipalPolicy"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonS3FullAccess",
        r#"[{"Effect":"Allow","Action":["s3:*","s3-object-lambda:*"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonS3ReadOnlyAccess",
        r#"[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]"#,
    ),
    (
        "/service-role/",
        "AWSLambdaBasicExecutionRole",
        r#"[{"Effect":"Allow","Action":["logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AWSLambdaExecute",
        r#"[{"Effect":"Allow","Action":["logs:*"],"Resource":"arn:aws:logs:*:*:*"},{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*"}]"#,
    ),
    (
        "/service-role/",
        "AWSLambdaRole",
        r#"[{"Effect":"Allow","Action":["lambda:InvokeFunction"],"Resource":["*"]}]"#,
    ),
    (
        "/",
        "AWSLambda_FullAccess",
        r#"[{"Effect":"Allow","Action":["lambda:*","logs:DescribeLogGroups","logs:DescribeLogStreams","logs:GetLogEvents","logs:FilterLogEvents","logs:StartLiveTail","logs:StopLiveTail","iam:GetRole","iam:GetPolicy","iam:GetPolicyVersion","iam:GetRolePolicy","iam:ListAttachedRolePolicies","iam:ListRolePolicies","iam:ListRoles","s3:ListAllMyBuckets","s3:GetBucketLocation","scheduler:*"],"Resource":"*"},{"Effect":"Allow","Action":"iam:PassRole","Resource":"*","Condition":{"StringEquals":{"iam:PassedToService":"lambda.amazonaws.com"}}}]"#,
    ),
    (
        "/",
        "AWSLambda_ReadOnlyAccess",
        r#"[{"Effect":"Allow","Action":["lambda:Get*","lambda:List*","logs:DescribeLogGroups","logs:DescribeLogStreams","logs:GetLogEvents","logs:FilterLogEvents","logs:StartLiveTail","logs:StopLiveTail","iam:GetRole","iam:ListRoles"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonEC2ContainerRegistryFullAccess",
        r#"[{"Effect":"Allow","Action":["ecr:*"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonEC2ContainerRegistryPowerUser",
        r#"[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonEC2ContainerRegistryReadOnly",
        r#"[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings"],"Resource":"*"}]"#,
    ),
    (
        "/service-role/",
        "AmazonECSTaskExecutionRolePolicy",
        r#"[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonECS_FullAccess",
        r#"[{"Effect":"Allow","Action":["ecs:*","ecr:*","logs:*","iam:PassRole"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "CloudWatchLogsFullAccess",
        r#"[{"Effect":"Allow","Action":["logs:*"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "CloudWatchLogsReadOnlyAccess",
        r#"[{"Effect":"Allow","Action":["logs:Describe*","logs:Get*","logs:List*","logs:StartQuery","logs:StopQuery","logs:TestMetricFilter","logs:FilterLogEvents","logs:StartLiveTail","logs:StopLiveTail"],"Resource":"*"}]"#,
    ),
    (
        "/",
        "AmazonEventBridgeSchedulerFullAccess",
        r#"[{"Effect":"Allow","Action":"scheduler:*","Resource":"*"},{"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::*:role/*","Condition":{"StringLike":{"iam:PassedToService":"scheduler.amazonaws.com"}}}]"#,
    ),
    (
        "/",
        "AmazonEventBridgeSchedulerReadOnlyAccess",
        r#"[{"Effect":"Allow","Action":["scheduler:Get*","scheduler:List*"],"Resource":"*"}]"#,
    ),
];

/// When AWS's policies were created, as they report it (2015-02-06).
const CREATED: i64 = 1_423_180_800;

fn record(path: &str, name: &str, statements: &str) -> PolicyRecord {
    // A stable id per policy, shaped like AWS's.
    let digest = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    PolicyRecord {
        name: name.to_owned(),
        id: format!("ANPAJ{digest:016X}"),
        path: path.to_owned(),
        arn: format!("arn:aws:iam::aws:policy{path}{name}"),
        description: None,
        created: CREATED,
        updated: CREATED,
        default_version: "v1".to_owned(),
        versions: vec![PolicyVersion {
            id: "v1".to_owned(),
            document: format!(r#"{{"Version":"2012-10-17","Statement":{statements}}}"#),
            created: CREATED,
        }],
        next_version: 2,
    }
}

pub fn by_arn(arn: &str) -> Option<PolicyRecord> {
    MANAGED
        .iter()
        .find(|(path, name, _)| arn == format!("arn:aws:iam::aws:policy{path}{name}"))
        .map(|(path, name, statements)| record(path, name, statements))
}

pub fn all() -> impl Iterator<Item = PolicyRecord> {
    MANAGED
        .iter()
        .map(|(path, name, statements)| record(path, name, statements))
}

#[cfg(test)]
mod tests {
    use nimbus_auth::policy::{Policy, PolicyKind};

    #[test]
    fn every_managed_policy_is_a_valid_identity_policy() {
        for policy in super::all() {
            let document = policy.default_document().unwrap();
            assert!(
                Policy::parse(document, PolicyKind::Identity).is_ok(),
                "{}",
                policy.name
            );
        }
        assert!(
            super::by_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
                .is_some()
        );
        assert!(super::by_arn("arn:aws:iam::aws:policy/AWSLambdaBasicExecutionRole").is_none());
    }
}
