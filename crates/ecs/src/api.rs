//! ECS's json-1.1 API: each call authorized as `ecs:<Action>` and carried out on a
//! blocking thread against the metadata store.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use nimbus_auth::authz::Access;
use nimbus_edge::protocol::json11;
use nimbus_edge::{
    AwsError, Operation, OperationDoc, Protocol, RequestContext, Service, ServiceDescriptor,
    ServiceRequest, catalog,
};
use serde_json::Value;

use crate::Ecs;
use crate::credentials::{pass_role, passed_roles};
use crate::error::internal;

const OPERATIONS: &[&str] = &[
    "CreateCluster",
    "DescribeClusters",
    "ListClusters",
    "DeleteCluster",
    "RegisterTaskDefinition",
    "DescribeTaskDefinition",
    "DeregisterTaskDefinition",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
    "RunTask",
    "StartTask",
    "StopTask",
    "DescribeTasks",
    "ListTasks",
    "CreateService",
    "UpdateService",
    "DescribeServices",
    "ListServices",
    "DeleteService",
    "ListContainerInstances",
    "DescribeContainerInstances",
    "UpdateContainerInstancesState",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

#[derive(Debug)]
pub struct EcsCall {
    name: &'static str,
    input: Value,
}

impl Operation for EcsCall {
    fn name(&self) -> &'static str {
        self.name
    }
}

pub struct EcsApi {
    ecs: Arc<Ecs>,
}

impl EcsApi {
    pub fn new(ecs: Arc<Ecs>) -> Self {
        Self { ecs }
    }
}

impl Service for EcsApi {
    type Operation = EcsCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::ECS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<EcsCall, AwsError> {
        let (name, input) = json11::call(req, OPERATIONS)?;
        Ok(EcsCall { name, input })
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: EcsCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let input = &call.input;
        let resource = match call.name {
            "CreateCluster" | "DeleteCluster" => ctx.arn(
                "ecs",
                &format!(
                    "cluster/{}",
                    input["clusterName"]
                        .as_str()
                        .or(input["cluster"].as_str())
                        .unwrap_or("default")
                ),
            ),
            _ => "*".to_owned(),
        };
        ctx.authorize(&Access::new(&format!("ecs:{}", call.name), &resource))?;
        let (ecs, name, passing) = (self.ecs.clone(), call.name, call.input.clone());
        let passed = tokio::task::spawn_blocking(move || passed_roles(&ecs, name, &passing))
            .await
            .map_err(internal)?;
        for role in &passed {
            ctx.authorize(&pass_role(role))?;
        }
        let ecs = self.ecs.clone();
        let output = tokio::task::spawn_blocking(move || {
            let input = &call.input;
            match call.name {
                "CreateCluster" => ecs.create_cluster(input),
                "DescribeClusters" => ecs.describe_clusters(input),
                "ListClusters" => ecs.list_clusters(),
                "DeleteCluster" => ecs.delete_cluster(input),
                "RegisterTaskDefinition" => ecs.register_task_definition(input),
                "DescribeTaskDefinition" => ecs.describe_task_definition(input),
                "DeregisterTaskDefinition" => ecs.deregister_task_definition(input),
                "ListTaskDefinitions" => ecs.list_task_definitions(input, false),
                "ListTaskDefinitionFamilies" => ecs.list_task_definitions(input, true),
                "RunTask" => ecs.run_task(input),
                "StartTask" => ecs.start_task(input),
                "StopTask" => ecs.stop_task(input),
                "DescribeTasks" => ecs.describe_tasks(input),
                "ListTasks" => ecs.list_tasks(input),
                "CreateService" => ecs.create_service(input),
                "UpdateService" => ecs.update_service(input),
                "DescribeServices" => ecs.describe_services(input),
                "ListServices" => ecs.list_services(input),
                "DeleteService" => ecs.delete_service(input),
                "ListContainerInstances" => ecs.list_container_instances(input),
                "DescribeContainerInstances" => ecs.describe_container_instances(input),
                "UpdateContainerInstancesState" => ecs.update_container_instances_state(input),
                "TagResource" => ecs.tag_resource(input),
                "UntagResource" => ecs.untag_resource(input),
                "ListTagsForResource" => ecs.list_tags_for_resource(input),
                other => Err(AwsError::unknown_operation(Protocol::Json11, other)),
            }
        })
        .await
        .map_err(internal)??;
        Ok(json11::response(&output))
    }
}
