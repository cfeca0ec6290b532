//! Task definitions: validated as ECS validates them (names, images, ports, memory,
//! the Fargate cpu/memory table), stored by family and revision.

use serde_json::{Value, json};

use crate::error::{client, invalid};
use nimbus_edge::AwsError;

/// Fargate's task sizes: cpu units and the memory (MiB) each allows.
const FARGATE: &[(i64, &[i64])] = &[
    (256, &[512, 1024, 2048]),
    (512, &[1024, 2048, 3072, 4096]),
    (1024, &[2048, 3072, 4096, 5120, 6144, 7168, 8192]),
    (
        2048,
        &[
            4096, 5120, 6144, 7168, 8192, 9216, 10240, 11264, 12288, 13312, 14336, 15360, 16384,
        ],
    ),
];

/// Whether Fargate offers `memory` MiB with `cpu` units (4 and 8 vCPU go up in 1 GiB
/// and 4 GiB steps).
fn fargate_allows(cpu: i64, memory: i64) -> bool {
    match cpu {
        4096 => (8192..=30720).contains(&memory) && memory % 1024 == 0,
        8192 => (16384..=61440).contains(&memory) && memory % 4096 == 0,
        _ => FARGATE
            .iter()
            .any(|(c, memories)| *c == cpu && memories.contains(&memory)),
    }
}

/// Task-level cpu and memory are strings, in units or `1 vCPU` / `2 GB` forms.
fn units(value: &Value, per: i64, field: &str) -> Result<Option<i64>, AwsError> {
    let Some(text) = value.as_str() else {
        return Ok(None);
    };
    let text = text.trim();
    let parsed = if let Some(v) = text
        .strip_suffix("vCPU")
        .or_else(|| text.strip_suffix("vcpu"))
    {
        v.trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * per as f64) as i64)
    } else if let Some(v) = text.strip_suffix("GB").or_else(|| text.strip_suffix("gb")) {
        v.trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * per as f64) as i64)
    } else {
        text.parse::<i64>().ok()
    };
    parsed
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or_else(|| client(format!("Invalid '{field}' setting for task: {text}")))
}

/// Letters, digits, hyphens and underscores, 1 to `max` of them: ECS's names.
pub(crate) fn is_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `dependsOn` names other containers of the task, with ECS's conditions; HEALTHY
/// needs a health check; COMPLETE and SUCCESS only fit non-essential containers; no
/// cycles.
fn check_dependencies(containers: &[Value]) -> Result<(), AwsError> {
    let find = |name: &str| containers.iter().find(|c| c["name"] == name);
    for container in containers {
        let name = container["name"].as_str().unwrap_or_default();
        for dependency in container["dependsOn"].as_array().into_iter().flatten() {
            let other = dependency["containerName"].as_str().unwrap_or_default();
            let condition = dependency["condition"].as_str().unwrap_or_default();
            let Some(target) = find(other).filter(|_| other != name) else {
                return Err(client(format!(
                    "Container '{name}' depends on '{other}', which is not another container of the task."
                )));
            };
            match condition {
                "START" => {}
                "HEALTHY" if target["healthCheck"].is_null() => {
                    return Err(client(format!(
                        "Container '{name}' depends on '{other}' being HEALTHY, but '{other}' has no health check."
                    )));
                }
                "HEALTHY" => {}
                "COMPLETE" | "SUCCESS" if target["essential"] != false => {
                    return Err(client(format!(
                        "Container '{other}' must be non-essential for a {condition} dependency."
                    )));
                }
                "COMPLETE" | "SUCCESS" => {}
                other => {
                    return Err(client(format!("Invalid dependsOn condition {other}")));
                }
            }
        }
    }
    match start_order(containers) {
        Some(_) => Ok(()),
        None => Err(client("The container dependencies form a cycle.")),
    }
}

/// The containers in an order that starts each after those it depends on; `None`
/// when the dependencies form a cycle, which leaves some never startable.
pub(crate) fn start_order(containers: &[Value]) -> Option<Vec<&Value>> {
    let mut ordered: Vec<&Value> = Vec::new();
    let mut remaining: Vec<&Value> = containers.iter().collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|c| {
            c["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|d| ordered.iter().any(|o| o["name"] == d["containerName"]))
        })?;
        ordered.push(remaining.remove(ready));
    }
    Some(ordered)
}

/// Checks a RegisterTaskDefinition request and returns the task definition ECS would
/// store (defaults filled in), without its ARN, revision and status.
pub fn validate(input: &Value) -> Result<Value, AwsError> {
    let family = input["family"].as_str().unwrap_or_default();
    if !is_name(family, 255) {
        return Err(client(format!(
            "Family contains invalid characters or is longer than 255: '{family}'"
        )));
    }
    let network_mode = input["networkMode"].as_str().unwrap_or("bridge");
    if !matches!(network_mode, "bridge" | "host" | "awsvpc" | "none") {
        return Err(client(format!("Invalid networkMode: {network_mode}")));
    }
    let compatibilities: Vec<&str> = input["requiresCompatibilities"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fargate = compatibilities.contains(&"FARGATE");
    if let Some(other) = compatibilities
        .iter()
        .find(|c| !matches!(**c, "EC2" | "FARGATE" | "EXTERNAL"))
    {
        return Err(invalid(format!(
            "Invalid requiresCompatibilities value: {other}"
        )));
    }
    let cpu = units(&input["cpu"], 1024, "cpu")?;
    let memory = units(&input["memory"], 1024, "memory")?;
    if fargate {
        if network_mode != "awsvpc" {
            return Err(client("Fargate only supports network mode 'awsvpc'."));
        }
        match (cpu, memory) {
            (Some(cpu), Some(memory)) if fargate_allows(cpu, memory) => {}
            (Some(cpu), Some(memory)) => {
                return Err(client(format!(
                    "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
                )));
            }
            _ => {
                return Err(client(
                    "Fargate requires task-level cpu and memory to be set.",
                ));
            }
        }
    }
    let containers = input["containerDefinitions"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| client("Container definitions are required."))?;
    let mut names = Vec::new();
    let mut host_ports = Vec::new();
    let mut checked = Vec::new();
    for container in containers {
        let mut container = container.clone();
        let name = container["name"].as_str().unwrap_or_default().to_owned();
        if !is_name(&name, 255) {
            return Err(client(format!("Container name '{name}' is invalid.")));
        }
        if names.contains(&name) {
            return Err(client(format!("Duplicate container name: {name}")));
        }
        names.push(name.clone());
        if container["image"].as_str().is_none_or(str::is_empty) {
            return Err(client(format!(
                "Container.image should not be null or empty. ({name})"
            )));
        }
        let memory_limit = container["memory"].as_i64();
        let reservation = container["memoryReservation"].as_i64();
        if memory.is_none() && memory_limit.is_none() && reservation.is_none() {
            return Err(client(format!(
                "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
            )));
        }
        if let (Some(limit), Some(reserved)) = (memory_limit, reservation)
            && reserved > limit
        {
            return Err(client(format!(
                "Invalid setting for container '{name}'. The memory reservation must be less than or equal to the memory limit."
            )));
        }
        if memory_limit.is_some_and(|m| m < 6) {
            return Err(client(format!(
                "Invalid setting for container '{name}'. The memory limit must be at least 6 MiB."
            )));
        }
        if container["essential"].is_null() {
            container["essential"] = true.into();
        }
        for mapping in container["portMappings"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let port = mapping["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&port) {
                return Err(client(format!(
                    "Invalid container port {port} for container '{name}'."
                )));
            }
            let protocol = mapping["protocol"].as_str().unwrap_or("tcp").to_owned();
            if !matches!(protocol.as_str(), "tcp" | "udp") {
                return Err(client(format!(
                    "Invalid protocol {protocol} for container '{name}'."
                )));
            }
            mapping["protocol"] = protocol.clone().into();
            let host = mapping["hostPort"].as_i64();
            match network_mode {
                "host" | "awsvpc" => {
                    if host.is_some_and(|h| h != port) {
                        return Err(client(format!(
                            "When networkMode={network_mode}, the containerPort and hostPort values must match."
                        )));
                    }
                    mapping["hostPort"] = port.into();
                }
                "none" => {
                    return Err(client("Port mappings are not valid with networkMode none."));
                }
                _ => {}
            }
            if let Some(host) = mapping["hostPort"].as_i64().filter(|h| *h != 0) {
                if !(1..=65535).contains(&host) {
                    return Err(client(format!(
                        "Invalid host port {host} for container '{name}'."
                    )));
                }
                if host_ports.contains(&(host, protocol.clone())) {
                    return Err(client(format!(
                        "The host port {host} is used by more than one container port mapping."
                    )));
                }
                host_ports.push((host, protocol));
            }
        }
        if let Some(check) = container.get("healthCheck").filter(|c| !c.is_null()) {
            let kind = check["command"][0].as_str().unwrap_or_default();
            if !matches!(kind, "CMD" | "CMD-SHELL")
                || check["command"].as_array().is_none_or(|c| c.len() < 2)
            {
                return Err(client(format!(
                    "Invalid healthCheck for container '{name}': command must start with CMD or CMD-SHELL"
                )));
            }
            for (field, low, high) in [
                ("interval", 5, 300),
                ("timeout", 2, 60),
                ("retries", 1, 10),
                ("startPeriod", 0, 300),
            ] {
                if let Some(value) = check[field].as_i64()
                    && !(low..=high).contains(&value)
                {
                    return Err(client(format!(
                        "Invalid healthCheck for container '{name}': {field} must be between {low} and {high}"
                    )));
                }
            }
        }
        if let Some(policy) = container.get("restartPolicy").filter(|p| !p.is_null()) {
            if policy["enabled"].as_bool().is_none() {
                return Err(client(format!(
                    "Invalid restartPolicy for container '{name}': enabled is required"
                )));
            }
            if policy["ignoredExitCodes"]
                .as_array()
                .is_some_and(|codes| codes.len() > 50)
            {
                return Err(client(format!(
                    "Invalid restartPolicy for container '{name}': at most 50 ignoredExitCodes"
                )));
            }
            if let Some(period) = policy["restartAttemptPeriod"].as_i64()
                && !(60..=1800).contains(&period)
            {
                return Err(client(format!(
                    "Invalid restartPolicy for container '{name}': restartAttemptPeriod must be between 60 and 1800"
                )));
            }
        }
        if let Some(log) = container.get("logConfiguration").filter(|l| !l.is_null()) {
            let driver = log["logDriver"].as_str().unwrap_or_default();
            if driver != "awslogs" {
                return Err(client(format!(
                    "Log driver {driver} is not supported by nimbus: use awslogs"
                )));
            }
            if log["options"]["awslogs-group"].as_str().is_none() {
                return Err(client("awslogs requires the awslogs-group option"));
            }
        }
        checked.push(container);
    }
    check_dependencies(&checked)?;
    if !containers.iter().any(|c| c["essential"] != false) {
        return Err(client(
            "A task definition must have at least one essential container.",
        ));
    }
    let mut definition = json!({
        "family": family,
        "containerDefinitions": checked,
        "networkMode": network_mode,
        "volumes": input["volumes"].as_array().cloned().unwrap_or_default(),
        "placementConstraints": [],
        "requiresCompatibilities": compatibilities,
        "compatibilities": if fargate { json!(["EC2", "FARGATE"]) } else { json!(["EC2"]) },
    });
    for field in [
        "taskRoleArn",
        "executionRoleArn",
        "runtimePlatform",
        "ephemeralStorage",
    ] {
        if !input[field].is_null() {
            definition[field] = input[field].clone();
        }
    }
    if let Some(cpu) = cpu {
        definition["cpu"] = cpu.to_string().into();
    }
    if let Some(memory) = memory {
        definition["memory"] = memory.to_string().into();
    }
    Ok(definition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(extra: Value, container: Value) -> Value {
        let mut input = json!({
            "family": "web",
            "containerDefinitions": [container],
        });
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        input
    }

    #[test]
    fn fargate_sizes_follow_the_table() {
        let container = json!({"name": "app", "image": "app:1"});
        let fargate = |cpu: &str, memory: &str| {
            validate(&definition(
                json!({"requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": cpu, "memory": memory}),
                container.clone(),
            ))
        };
        assert!(fargate("256", "512").is_ok());
        assert!(fargate("1 vCPU", "2 GB").is_ok());
        assert!(fargate("4096", "30720").is_ok());
        let err = fargate("256", "4096").unwrap_err();
        assert!(
            err.message.contains("No Fargate configuration exists"),
            "{}",
            err.message
        );
        assert!(fargate("512", "1000").is_err());
        let bridge = validate(&definition(
            json!({"requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"}),
            container,
        ));
        assert!(bridge.is_err(), "Fargate needs awsvpc");
    }

    #[test]
    fn containers_and_ports_are_checked() {
        let ok = validate(&definition(
            json!({"networkMode": "host"}),
            json!({"name": "app", "image": "app:1", "memory": 128, "portMappings": [{"containerPort": 8080}]}),
        ))
        .unwrap();
        let container = &ok["containerDefinitions"][0];
        assert_eq!(container["essential"], true);
        assert_eq!(container["portMappings"][0]["hostPort"], 8080);
        assert_eq!(container["portMappings"][0]["protocol"], "tcp");
        for bad in [
            json!({"name": "app", "image": "app:1"}),
            json!({"name": "app", "image": "", "memory": 128}),
            json!({"name": "bad name", "image": "a", "memory": 128}),
            json!({"name": "app", "image": "a", "memory": 128, "portMappings": [{"containerPort": 70000}]}),
            json!({"name": "app", "image": "a", "memory": 128, "memoryReservation": 256}),
            json!({"name": "app", "image": "a", "memory": 128, "logConfiguration": {"logDriver": "json-file"}}),
        ] {
            assert!(
                validate(&definition(json!({}), bad.clone())).is_err(),
                "{bad}"
            );
        }
        let mismatched = validate(&definition(
            json!({"networkMode": "host"}),
            json!({"name": "app", "image": "a", "memory": 128, "portMappings": [{"containerPort": 80, "hostPort": 81}]}),
        ));
        assert!(mismatched.is_err());
    }

    #[test]
    fn containers_start_after_what_they_depend_on() {
        let containers = json!([
            {"name": "c", "dependsOn": [{"containerName": "b"}]},
            {"name": "b", "dependsOn": [{"containerName": "a"}]},
            {"name": "a"},
        ]);
        let order = start_order(containers.as_array().unwrap()).unwrap();
        let names: Vec<&str> = order.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let cycle = json!([
            {"name": "a", "dependsOn": [{"containerName": "b"}]},
            {"name": "b", "dependsOn": [{"containerName": "a"}]},
        ]);
        assert!(start_order(cycle.as_array().unwrap()).is_none());
    }
}
