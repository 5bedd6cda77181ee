//! One handler per subcommand: build the request, send it, print the answer.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::context::{Ctx, not_api, parse_json, value_name};
use super::render::{NONE, Table, cell, describe, field};
use super::service_port::{ServicePortArg, ports_column};
use super::{
    Affinity, ApplyArgs, Command, ConntrackCommand, ConntrackFilterArgs, EndpointCommand, Failure,
    MirrorAddArgs, MirrorCommand, NodeCommand, Output, PortAddArgs, PortCommand, RouteCommand,
    ServiceAddArgs, ServiceCommand, ServiceName,
};
use crate::client::{check_status, segment};

/// Runs `command`; returns the exit status on success.
pub(super) fn dispatch(ctx: &mut Ctx<'_>, command: &Command) -> Result<u8, Failure> {
    match command {
        Command::Status => status(ctx),
        Command::Port(command) => port(ctx, command).map(|()| 0),
        Command::Service(command) => service(ctx, command).map(|()| 0),
        Command::Endpoint(command) => endpoint(ctx, command).map(|()| 0),
        Command::Route(command) => route(ctx, command).map(|()| 0),
        Command::Node(command) => node(ctx, command).map(|()| 0),
        Command::Mirror(command) => mirror(ctx, command).map(|()| 0),
        Command::Capture(args) => super::capture::run(ctx, args).map(|()| 0),
        Command::Apply(args) => apply(ctx, args).map(|()| 0),
        Command::Stats => stats(ctx).map(|()| 0),
        Command::Conntrack(ConntrackCommand::List(filter)) => {
            conntrack_list(ctx, filter).map(|()| 0)
        }
        Command::Conntrack(ConntrackCommand::Flush(filter)) => {
            conntrack_flush(ctx, filter).map(|()| 0)
        }
        Command::Metrics => metrics(ctx).map(|()| 0),
    }
}

fn port_path(name: &str) -> String {
    format!("/v1/ports/{}", segment(name))
}

pub(super) fn service_path(service: &ServiceName) -> String {
    format!(
        "/v1/services/{}/{}",
        segment(&service.namespace),
        segment(&service.name)
    )
}

/// `10.244.2.0/24` → `/v1/routes/10.244.2.0/24`: the contract keeps the
/// prefix's slash in the path; each side is encoded on its own.
pub(super) fn route_path(prefix: &str) -> String {
    let parts: Vec<String> = prefix.split('/').map(segment).collect();
    format!("/v1/routes/{}", parts.join("/"))
}

fn status(ctx: &mut Ctx<'_>) -> Result<u8, Failure> {
    // 503 is an answer here: the daemon is up but not forwarding.
    let health = ctx.client.request("GET", "/v1/health", None)?;
    if health.status != 503 {
        check_status(health.clone())?;
    }
    let health_json = parse_json(&health.body, "GET /v1/health")?;
    let forwarding = health_json
        .get("forwarding")
        .and_then(Value::as_bool)
        .unwrap_or(health.status == 200);
    let config = ctx.get("/v1/config")?;
    let exit = if forwarding { 0 } else { 1 };
    if ctx.output == Output::Json {
        let mut both = b"{\"health\":".to_vec();
        both.extend_from_slice(&health.body);
        both.extend_from_slice(b",\"config\":");
        both.extend_from_slice(&config.body);
        both.push(b'}');
        ctx.print_json(&both, "GET /v1/config")?;
        return Ok(exit);
    }
    let config = parse_json(&config.body, "GET /v1/config")?;
    let mut summary = serde_json::Map::new();
    summary.insert(
        "forwarding".into(),
        Value::from(if forwarding { "yes" } else { "no" }),
    );
    for key in ["workers", "generation"] {
        if let Some(value) = health_json.get(key).or_else(|| config.get(key)) {
            summary.insert(key.into(), value.clone());
        }
    }
    if let Some(node) = config.get("node") {
        let name = node.get("name").unwrap_or(node);
        summary.insert("node".into(), Value::from(cell(name)));
    }
    for key in ["ports", "routes", "services", "nodes", "mirrors"] {
        let count = match config.get(key) {
            Some(Value::Array(items)) => Value::from(items.len()),
            Some(Value::Object(items)) => Value::from(items.len()),
            Some(other) => other.clone(),
            None => continue,
        };
        summary.insert(key.into(), count);
    }
    if let Some(down) = health_json.get("ports_down").and_then(Value::as_array)
        && !down.is_empty()
    {
        // Names only; `port show NAME` gives the reason.
        let names: Vec<String> = down.iter().map(cell).collect();
        summary.insert("ports_down".into(), Value::from(names.join(", ")));
    }
    if let Some(source) = health_json.get("source") {
        // e.g. "kubernetes (node-a): synced, 12 services, last sync 1.2 s ago"
        let text = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or("?");
        let mut line = format!(
            "{} ({}): {}",
            text("kind"),
            text("node_name"),
            text("state")
        );
        if let Some(n) = source.pointer("/objects/services").and_then(Value::as_u64) {
            line.push_str(&format!(", {n} services"));
        }
        if let Some(error) = source.get("error").and_then(Value::as_str) {
            line.push_str(&format!(", error: {error}"));
        }
        summary.insert("source".into(), Value::from(line));
    }
    write!(ctx.out, "{}", describe(&Value::Object(summary)))?;
    Ok(exit)
}

fn port(ctx: &mut Ctx<'_>, command: &PortCommand) -> Result<(), Failure> {
    match command {
        PortCommand::List => ctx.list("/v1/ports", "ports", port_table),
        PortCommand::Show { name } => ctx.show(&port_path(name)),
        PortCommand::Add(args) => {
            let done = format!("port/{} created", args.name);
            ctx.send("POST", "/v1/ports", &NewPort::from(args), &done)
        }
        PortCommand::Del { name } => ctx.delete(&port_path(name), &format!("port/{name} deleted")),
    }
}

fn port_table(ports: &[Value]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "KIND",
        "IFNAME",
        "MAC",
        "IPS",
        "SOURCE",
        "STATE",
        "RX-PACKETS",
        "TX-PACKETS",
    ]);
    for port in ports {
        let counter = |key: &str| {
            port.get("counters")
                .map_or(NONE.to_string(), |c| field(c, key))
        };
        table.push(vec![
            field(port, "name"),
            field(port, "kind"),
            field(port, "ifname"),
            field(port, "mac"),
            field(port, "ips"),
            field(port, "source"),
            field(port, "state"),
            counter("rx_packets"),
            counter("tx_packets"),
        ]);
    }
    table
}

/// The body of `POST /v1/ports`: only what was given.
#[derive(Serialize)]
struct NewPort<'a> {
    name: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_ifname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offload: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rx_ring: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    masquerade: Option<bool>,
}

impl<'a> From<&'a PortAddArgs> for NewPort<'a> {
    fn from(args: &'a PortAddArgs) -> NewPort<'a> {
        NewPort {
            name: &args.name,
            kind: match args.kind {
                super::PortKind::Tap => "tap",
                super::PortKind::Afpacket => "afpacket",
            },
            ifname: args.ifname.as_deref(),
            netns: args.netns.as_deref(),
            pod_ifname: args.pod_ifname.as_deref(),
            mac: args.mac.as_deref(),
            ips: &args.ips,
            mtu: args.mtu,
            offload: args.no_offload.then_some(false),
            rx_ring: args.rx_ring.then_some(true),
            masquerade: match (args.masquerade, args.no_masquerade) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        }
    }
}

fn service(ctx: &mut Ctx<'_>, command: &ServiceCommand) -> Result<(), Failure> {
    match command {
        ServiceCommand::List => ctx.list("/v1/services", "services", service_table),
        ServiceCommand::Show { name } => ctx.show(&service_path(name)),
        ServiceCommand::Add(args) => {
            let done = format!("service/{} created", args.name);
            ctx.send("POST", "/v1/services", &NewService::from(args), &done)
        }
        ServiceCommand::Del { name } => {
            let done = format!("service/{name} deleted");
            ctx.delete(&service_path(name), &done)
        }
    }
}

fn service_table(services: &[Value]) -> Table {
    let mut table = Table::new(&["NAME", "CLUSTER-IP", "PORT(S)", "AFFINITY", "READY"]);
    for service in services {
        let endpoints = service.get("endpoints").and_then(Value::as_array);
        let ready = endpoints.map_or(NONE.to_string(), |e| {
            let ready = e
                .iter()
                .filter(|e| e["ready"] != Value::Bool(false))
                .count();
            format!("{ready}/{}", e.len())
        });
        table.push(vec![
            field(service, "name"),
            field(service, "cluster_ip"),
            ports_column(service.get("ports")),
            field(service, "session_affinity"),
            ready,
        ]);
    }
    table
}

/// The body of `POST /v1/services`.
#[derive(Serialize)]
struct NewService<'a> {
    name: String,
    cluster_ip: &'a str,
    ports: &'a [ServicePortArg],
    session_affinity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    affinity_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_traffic_policy: Option<&'static str>,
}

impl<'a> From<&'a ServiceAddArgs> for NewService<'a> {
    fn from(args: &'a ServiceAddArgs) -> NewService<'a> {
        NewService {
            name: args.name.to_string(),
            cluster_ip: &args.cluster_ip,
            ports: &args.ports,
            session_affinity: match args.affinity {
                Some(Affinity::ClientIp) => "ClientIP",
                Some(Affinity::None) | None => "None",
            },
            affinity_timeout_secs: args.affinity_timeout,
            external_traffic_policy: args.external_traffic_policy.map(|p| match p {
                crate::ctl::TrafficPolicy::Cluster => "Cluster",
                crate::ctl::TrafficPolicy::Local => "Local",
            }),
        }
    }
}

/// One endpoint in a request body.
#[derive(Serialize)]
struct NewEndpoint<'a> {
    address: &'a str,
    ready: bool,
    terminating: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

fn endpoint(ctx: &mut Ctx<'_>, command: &EndpointCommand) -> Result<(), Failure> {
    match command {
        EndpointCommand::List { service } => {
            let path = format!("{}/endpoints", service_path(service));
            ctx.list(&path, "endpoints", endpoint_table)
        }
        EndpointCommand::Add {
            service,
            address,
            not_ready,
            terminating,
            node,
        } => {
            let body = NewEndpoint {
                address,
                ready: !not_ready,
                terminating: *terminating,
                node: node.as_deref(),
            };
            let path = format!("{}/endpoints", service_path(service));
            let done = format!("endpoint {address} added to service/{service}");
            ctx.send("POST", &path, &body, &done)
        }
        EndpointCommand::Del { service, address } => {
            let path = format!("{}/endpoints/{}", service_path(service), segment(address));
            let done = format!("endpoint {address} removed from service/{service}");
            ctx.delete(&path, &done)
        }
        EndpointCommand::Set { service, addresses } => {
            #[derive(Serialize)]
            struct Endpoints<'a> {
                endpoints: Vec<NewEndpoint<'a>>,
            }
            let body = Endpoints {
                endpoints: addresses
                    .iter()
                    .map(|address| NewEndpoint {
                        address,
                        ready: true,
                        terminating: false,
                        node: None,
                    })
                    .collect(),
            };
            let path = format!("{}/endpoints", service_path(service));
            let list = if addresses.is_empty() {
                NONE.to_string()
            } else {
                addresses.join(", ")
            };
            let done = format!("service/{service} endpoints set: {list}");
            ctx.send("PUT", &path, &body, &done)
        }
    }
}

fn endpoint_table(endpoints: &[Value]) -> Table {
    let mut table = Table::new(&["ADDRESS", "READY", "TERMINATING", "NODE"]);
    for endpoint in endpoints {
        table.push(vec![
            field(endpoint, "address"),
            field(endpoint, "ready"),
            field(endpoint, "terminating"),
            field(endpoint, "node"),
        ]);
    }
    table
}

fn route(ctx: &mut Ctx<'_>, command: &RouteCommand) -> Result<(), Failure> {
    match command {
        RouteCommand::List => ctx.list("/v1/routes", "routes", |routes| {
            let mut table = Table::new(&["PREFIX", "VIA", "SOURCE"]);
            for route in routes {
                table.push(vec![
                    field(route, "prefix"),
                    field(route, "via"),
                    field(route, "source"),
                ]);
            }
            table
        }),
        RouteCommand::Add { prefix, via, .. } => {
            let body = serde_json::json!({ "prefix": prefix, "via": via });
            let done = format!("route {prefix} via {via} added");
            ctx.send("POST", "/v1/routes", &body, &done)
        }
        RouteCommand::Del { prefix } => {
            let done = format!("route {prefix} deleted");
            ctx.delete(&route_path(prefix), &done)
        }
    }
}

fn node(ctx: &mut Ctx<'_>, command: &NodeCommand) -> Result<(), Failure> {
    match command {
        NodeCommand::List => ctx.list("/v1/nodes", "nodes", |nodes| {
            let mut table = Table::new(&["NAME", "NODE-IP", "POD-CIDR", "VNI"]);
            for node in nodes {
                table.push(vec![
                    field(node, "name"),
                    field(node, "node_ip"),
                    field(node, "pod_cidr"),
                    field(node, "vni"),
                ]);
            }
            table
        }),
        NodeCommand::Show { name: None } => ctx.show("/v1/node"),
        NodeCommand::Show { name: Some(name) } => ctx.show(&format!("/v1/nodes/{}", segment(name))),
        NodeCommand::Add {
            name,
            node_ip,
            pod_cidr,
            vni,
            vtep_mac,
        } => {
            #[derive(Serialize)]
            struct NewNode<'a> {
                name: &'a str,
                node_ip: &'a str,
                pod_cidr: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                vni: Option<u32>,
                #[serde(skip_serializing_if = "Option::is_none")]
                vtep_mac: Option<&'a str>,
            }
            let body = NewNode {
                name,
                node_ip,
                pod_cidr,
                vni: *vni,
                vtep_mac: vtep_mac.as_deref(),
            };
            let done = format!("node/{name} created");
            ctx.send("POST", "/v1/nodes", &body, &done)
        }
        NodeCommand::Del { name } => {
            let path = format!("/v1/nodes/{}", segment(name));
            ctx.delete(&path, &format!("node/{name} deleted"))
        }
    }
}

fn mirror(ctx: &mut Ctx<'_>, command: &MirrorCommand) -> Result<(), Failure> {
    match command {
        MirrorCommand::List => ctx.list("/v1/mirrors", "mirrors", |mirrors| {
            let mut table = Table::new(&[
                "NAME",
                "PORTS",
                "DIRECTION",
                "STAGE",
                "IFACE",
                "FILTER",
                "FRAMES",
                "BYTES",
                "DROPPED",
            ]);
            for mirror in mirrors {
                let counter = |key: &str| {
                    mirror
                        .get("counters")
                        .map_or_else(|| NONE.to_string(), |c| field(c, key))
                };
                let stages = match mirror.get("stages") {
                    Some(list) => cell(list),
                    None => field(mirror, "stage"),
                };
                table.push(vec![
                    field(mirror, "name"),
                    field(mirror, "ports"),
                    field(mirror, "direction"),
                    stages,
                    field(mirror, "iface"),
                    field(mirror, "filter"),
                    counter("frames"),
                    counter("bytes"),
                    counter("dropped"),
                ]);
            }
            table
        }),
        MirrorCommand::Show { name } => ctx.show(&format!("/v1/mirrors/{}", segment(name))),
        MirrorCommand::Add(args) => {
            let body = NewMirror::from(args);
            let done = format!("mirror/{} created", body.name);
            ctx.send("POST", "/v1/mirrors", &body, &done)
        }
        MirrorCommand::Del { name } => {
            let path = format!("/v1/mirrors/{}", segment(name));
            ctx.delete(&path, &format!("mirror/{name} deleted"))
        }
    }
}

/// The body of `POST /v1/mirrors`: only what was given.
#[derive(Serialize)]
struct NewMirror<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ports: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snaplen: Option<u32>,
}

impl<'a> From<&'a MirrorAddArgs> for NewMirror<'a> {
    fn from(args: &'a MirrorAddArgs) -> NewMirror<'a> {
        let stages: Vec<String> = args.select.stages.iter().map(|s| value_name(*s)).collect();
        let (stage, stages) = match stages.len() {
            0 => (None, Vec::new()),
            1 => (stages.into_iter().next(), Vec::new()),
            _ => (None, stages),
        };
        let filter = match (&args.filter, args.filter_words.is_empty()) {
            (Some(f), _) => Some(f.clone()),
            (None, false) => Some(args.filter_words.join(" ")),
            (None, true) => None,
        };
        NewMirror {
            name: args
                .name
                .as_deref()
                .or(args.iface.as_deref())
                .unwrap_or_default(),
            ports: &args.select.ports,
            direction: args.select.direction.map(value_name),
            stage,
            stages,
            filter,
            iface: args.iface.as_deref(),
            snaplen: args.snaplen,
        }
    }
}

/// The document and its content type: `.toml` is TOML, `.json` and stdin JSON.
fn read_document(file: &Path) -> Result<(Vec<u8>, &'static str), Failure> {
    if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| Failure::Local(format!("read the document from stdin: {e}")))?;
        return Ok((body, "application/json"));
    }
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let content_type = match extension.as_deref() {
        Some("toml") => "application/toml",
        Some("json") => "application/json",
        _ => {
            return Err(Failure::Local(format!(
                "apply -f {}: cannot tell JSON from TOML; name the file *.json or *.toml, or pipe JSON to -f -",
                file.display()
            )));
        }
    };
    let body =
        std::fs::read(file).map_err(|e| Failure::Local(format!("read {}: {e}", file.display())))?;
    Ok((body, content_type))
}

fn apply(ctx: &mut Ctx<'_>, args: &ApplyArgs) -> Result<(), Failure> {
    let request = "PUT /v1/state";
    let (body, content_type) = read_document(&args.file)?;
    let response = ctx
        .client
        .request("PUT", "/v1/state", Some((content_type, &body)))?;
    let response = check_status(response)?;
    if ctx.output == Output::Json {
        return ctx.print_json(&response.body, request);
    }
    let answer = parse_json(&response.body, request)?;
    let generation = field(&answer, "generation");
    let changed = answer
        .get("changed")
        .and_then(Value::as_object)
        .ok_or_else(|| not_api(request, "no \"changed\" object in the answer"))?;
    let mut kinds: Vec<&String> = changed.keys().collect();
    let rank = |k: &str| {
        ["services", "endpoints", "routes", "nodes"]
            .iter()
            .position(|x| *x == k)
    };
    kinds.sort_by_key(|k| (rank(k).unwrap_or(usize::MAX), k.as_str()));
    let mut table = Table::new(&["RESOURCE", "ADDED", "UPDATED", "REMOVED"]);
    let mut any = false;
    for kind in kinds {
        let counts = &changed[kind.as_str()];
        let row: Vec<String> = ["added", "updated", "removed"]
            .iter()
            .map(|k| field(counts, k))
            .collect();
        any |= ["added", "updated", "removed"]
            .iter()
            .any(|k| counts.get(*k).and_then(Value::as_u64).unwrap_or(0) > 0);
        table.push([vec![kind.clone()], row].concat());
    }
    if any {
        writeln!(
            ctx.out,
            "applied {}: generation {generation}",
            args.file.display()
        )?;
        write!(ctx.out, "{}", table.render(0))?;
    } else {
        writeln!(ctx.out, "no changes (generation {generation})")?;
    }
    Ok(())
}

fn stats(ctx: &mut Ctx<'_>) -> Result<(), Failure> {
    let request = "GET /v1/stats";
    let response = ctx.get("/v1/stats")?;
    if ctx.output == Output::Json {
        return ctx.print_json(&response.body, request);
    }
    let stats = parse_json(&response.body, request)?;
    writeln!(
        ctx.out,
        "generation {}, {} workers",
        field(&stats, "generation"),
        field(&stats, "workers")
    )?;
    writeln!(ctx.out)?;
    let ports = stats.get("ports").and_then(Value::as_array);
    // The header of each column is its key, upper case with dashes.
    let columns = [
        "rx_packets",
        "rx_bytes",
        "tx_packets",
        "tx_bytes",
        "rx_dropped",
        "rx_errors",
    ];
    let headers: Vec<String> = columns
        .iter()
        .map(|k| k.to_uppercase().replace('_', "-"))
        .collect();
    let headers: Vec<&str> = std::iter::once("PORT")
        .chain(headers.iter().map(String::as_str))
        .collect();
    let mut table = Table::new(&headers);
    for port in ports.into_iter().flatten() {
        let cells = std::iter::once("name")
            .chain(columns)
            .map(|k| field(port, k));
        table.push(cells.collect());
    }
    if table.is_empty() {
        writeln!(ctx.out, "no ports")?;
    } else {
        write!(ctx.out, "{}", table.render(0))?;
    }
    for (key, header, none) in [
        ("drops", ["DROP-REASON", "PACKETS"], "no drops"),
        ("events", ["EVENT", "COUNT"], "no events"),
    ] {
        writeln!(ctx.out)?;
        let mut table = Table::new(&header);
        let counts = stats.get(key).and_then(Value::as_object);
        for (name, count) in counts.into_iter().flatten() {
            if count.as_u64() != Some(0) {
                table.push(vec![name.clone(), cell(count)]);
            }
        }
        if table.is_empty() {
            writeln!(ctx.out, "{none}")?;
        } else {
            write!(ctx.out, "{}", table.render(0))?;
        }
    }
    Ok(())
}

fn conntrack_list(ctx: &mut Ctx<'_>, filter: &ConntrackFilterArgs) -> Result<(), Failure> {
    let path = format!("/v1/conntrack{}", filter.query());
    let request = format!("GET {path}");
    let response = ctx.get(&path)?;
    if ctx.output == Output::Json {
        return ctx.print_json(&response.body, &request);
    }
    let body = parse_json(&response.body, &request)?;
    write!(ctx.out, "{}", super::conntrack::render_listing(&body))?;
    let shown = body["entries"].as_array().map_or(0, Vec::len);
    // conntrack-tools prints this summary on stderr; `-o json` is the
    // machine-readable form here.
    writeln!(ctx.out, "{shown} flow entries have been shown.")?;
    Ok(())
}

fn conntrack_flush(ctx: &mut Ctx<'_>, filter: &ConntrackFilterArgs) -> Result<(), Failure> {
    let path = format!("/v1/conntrack{}", filter.query());
    let request = format!("DELETE {path}");
    let response = check_status(ctx.client.request("DELETE", &path, None)?)?;
    if ctx.output == Output::Json {
        return ctx.print_json(&response.body, &request);
    }
    let body = parse_json(&response.body, &request)?;
    let flushed = body["flushed"].as_u64().unwrap_or(0);
    writeln!(ctx.out, "{flushed} flow entries have been deleted.")?;
    Ok(())
}

fn metrics(ctx: &mut Ctx<'_>) -> Result<(), Failure> {
    let response = ctx.get("/metrics")?;
    ctx.out.write_all(&response.body)?;
    Ok(())
}
