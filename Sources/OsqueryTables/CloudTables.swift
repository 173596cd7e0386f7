import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's cloud instance tables: the link-local metadata services of EC2, Azure and Yandex
/// Cloud. The address is a flag (`cloud_metadata_address`) so tests can stand in on loopback;
/// every request is bounded by `cloud_metadata_timeout` (osquery's 3 s). Off a cloud the
/// endpoint does not answer: no rows, and the reason is logged once.
enum CloudTables {
    struct Endpoint {
        let flags: Flags
        let log: OnceLog

        var base: String { "http://" + flags[.cloudMetadataAddress] }
        var timeout: Double { Double(max(flags[.cloudMetadataTimeout], 1)) }

        func fetch(_ path: String, method: String = "GET", headers: [(String, String)] = []) throws -> HTTPFetch.Response {
            try HTTPFetch.request(base + path, method: method, headers: headers, timeout: timeout, maxBytes: 1 << 20, redirects: 0)
        }
    }

    static func text(_ json: JSONValue?, _ key: String) -> String {
        if case .string(let s)? = json?[key] { return s }
        return ""
    }

    static func parseObject(_ body: [UInt8]) -> JSONValue? {
        guard let value = try? JSONValue.parse(String(decoding: body, as: UTF8.self)), value.members != nil else { return nil }
        return value
    }

    // MARK: EC2

    /// osquery's text cleaning of a metadata value: line breaks removed.
    static func ec2Text(_ body: [UInt8]) -> String {
        String(decoding: body.filter { $0 != 10 }, as: UTF8.self)
    }

    /// An IMDSv2 session: the token (nil when the service gives none: IMDSv1), or a throw when
    /// the service cannot be reached.
    static func ec2Token(_ endpoint: Endpoint) throws -> String? {
        let response = try endpoint.fetch("/latest/api/token", method: "PUT", headers: [("x-aws-ec2-metadata-token-ttl-seconds", "21600")])
        return response.status == 200 ? String(decoding: response.body, as: UTF8.self) : nil
    }

    /// The token to send (nil inside: IMDSv1, none), or nil when the service does not answer,
    /// said once: not an EC2 instance.
    static func ec2Session(_ endpoint: Endpoint, table: String, log: OnceLog) -> String?? {
        do {
            return .some(try ec2Token(endpoint))
        } catch {
            log.info("\(table): the EC2 metadata service at \(endpoint.base) is not reachable (\(error)); not an EC2 instance")
            return nil
        }
    }

    /// A metadata document: its body on 200, "" on 404, nil otherwise.
    static func ec2Get(_ endpoint: Endpoint, _ path: String, token: String?) -> [UInt8]? {
        let headers = token.map { [("x-aws-ec2-metadata-token", $0)] } ?? []
        guard let response = try? endpoint.fetch("/latest/" + path, headers: headers) else { return nil }
        if response.status == 404 { return [] }
        return response.status == 200 ? response.body : nil
    }

    static func ec2InstanceMetadata(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("ec2_instance_metadata", [
            col("instance_id", .text), col("instance_type", .text), col("architecture", .text), col("region", .text),
            col("availability_zone", .text), col("local_hostname", .text), col("local_ipv4", .text),
            col("mac", .text, .collateNocase), col("security_groups", .text), col("iam_arn", .text), col("ami_id", .text),
            col("reservation_id", .text), col("account_id", .text), col("ssh_public_key", .text),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            let endpoint = Endpoint(flags: flags, log: log)
            guard let token = ec2Session(endpoint, table: "ec2_instance_metadata", log: log) else { return rows }
            var values: [String: String] = [:]
            if let document = ec2Get(endpoint, "dynamic/instance-identity/document", token: token).flatMap(parseObject) {
                for (column, key) in [("instance_id", "instanceId"), ("instance_type", "instanceType"), ("local_ipv4", "privateIp"),
                                      ("availability_zone", "availabilityZone"), ("region", "region"), ("account_id", "accountId"),
                                      ("architecture", "architecture"), ("ami_id", "imageId")] {
                    values[column] = text(document, key)
                }
            }
            if let info = ec2Get(endpoint, "meta-data/iam/info", token: token).flatMap(parseObject) {
                values["iam_arn"] = text(info, "InstanceProfileArn")
            }
            for (column, path) in [("mac", "meta-data/mac"), ("local_hostname", "meta-data/local-hostname"),
                                   ("ssh_public_key", "meta-data/public-keys/0/openssh-key"),
                                   ("reservation_id", "meta-data/reservation-id"), ("security_groups", "meta-data/security-groups")] {
                if let body = ec2Get(endpoint, path, token: token) { values[column] = ec2Text(body) }
            }
            rows.appendRow(schema.columns.map { values[$0.name].map { .text($0) } ?? .null })
            return rows
        }
    }

    /// The instance's tags from the metadata service's `meta-data/tags/instance` (present
    /// when the instance allows tags in its metadata). osquery asks the EC2 API with AWS
    /// credentials instead; the metadata service needs none.
    static func ec2InstanceTags(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("ec2_instance_tags", [col("instance_id", .text), col("key", .text), col("value", .text)], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            let endpoint = Endpoint(flags: flags, log: log)
            guard let token = ec2Session(endpoint, table: "ec2_instance_tags", log: log) else { return rows }
            guard let document = ec2Get(endpoint, "dynamic/instance-identity/document", token: token).flatMap(parseObject),
                  case let instance = text(document, "instanceId"), !instance.isEmpty else {
                StatusLog.warning("Instance id and region are empty, returning no results")
                return rows
            }
            guard let keys = ec2Get(endpoint, "meta-data/tags/instance", token: token), !keys.isEmpty else {
                log.info("ec2_instance_tags: the instance does not expose its tags in the metadata service")
                return rows
            }
            for key in keys.split(separator: 10).map({ String(decoding: $0, as: UTF8.self) }) where !key.isEmpty {
                guard let value = ec2Get(endpoint, "meta-data/tags/instance/" + key, token: token) else { continue }
                rows.append(.text(instance))
                rows.append(.text(key))
                rows.append(.text(bytes: value))
            }
            return rows
        }
    }

    // MARK: Azure

    /// osquery's sign of an Azure VM: the agent's log.
    static let azureAgentLog = "/var/log/waagent.log"

    static func azureDocument(_ endpoint: Endpoint, agentLog: String, table: String) -> JSONValue? {
        guard FileIO.exists(agentLog) else {
            endpoint.log.info("\(table): Couldn't fetch metadata: Not an Azure instance (no \(agentLog))")
            return nil
        }
        let response: HTTPFetch.Response
        do {
            response = try endpoint.fetch("/metadata/instance/compute?api-version=2018-02-01", headers: [("Metadata", "true")])
        } catch {
            endpoint.log.info("\(table): Couldn't fetch metadata: Couldn't request \(endpoint.base): \(error)")
            return nil
        }
        guard response.status == 200 else {
            StatusLog.info("Couldn't fetch metadata: Azure metadata service responded with \(response.status)")
            return nil
        }
        guard let document = parseObject(response.body) else {
            StatusLog.info("Couldn't fetch metadata: Azure metadata service response isn't a JSON object")
            return nil
        }
        return document
    }

    static func azureInstanceMetadata(flags: Flags, agentLog: String = azureAgentLog, log: OnceLog = .shared) -> FunctionTable {
        table("azure_instance_metadata", [
            col("location", .text), col("name", .text), col("offer", .text), col("publisher", .text), col("sku", .text),
            col("version", .text), col("os_type", .text), col("platform_update_domain", .text), col("platform_fault_domain", .text),
            col("vm_id", .text, .index), col("vm_size", .text), col("subscription_id", .text), col("resource_group_name", .text),
            col("placement_group_id", .text), col("vm_scale_set_name", .text), col("zone", .text),
        ], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            guard let document = azureDocument(Endpoint(flags: flags, log: log), agentLog: agentLog, table: "azure_instance_metadata") else {
                return rows
            }
            let keys = ["location", "name", "offer", "publisher", "sku", "version", "osType", "platformUpdateDomain",
                        "platformFaultDomain", "vmId", "vmSize", "subscriptionId", "resourceGroupName", "placementGroupId",
                        "vmScaleSetName", "zone"]
            rows.appendRow(keys.map { .text(text(document, $0)) })
            return rows
        }
    }

    static func azureInstanceTags(flags: Flags, agentLog: String = azureAgentLog, log: OnceLog = .shared) -> FunctionTable {
        table("azure_instance_tags", [col("vm_id", .text), col("key", .text), col("value", .text)], attributes: .cacheable) { _, schema in
            var rows = TableRows(schema: schema)
            guard let document = azureDocument(Endpoint(flags: flags, log: log), agentLog: agentLog, table: "azure_instance_tags") else {
                return rows
            }
            let vm = text(document, "vmId")
            // "key:value;key:value", cut at each tag's first ':'.
            for tag in text(document, "tags").split(separator: ";", omittingEmptySubsequences: false) {
                guard let colon = tag.firstIndex(of: ":") else { continue }
                rows.append(.text(vm))
                rows.append(.text(String(tag[..<colon])))
                rows.append(.text(String(tag[tag.index(after: colon)...])))
            }
            return rows
        }
    }

    // MARK: Yandex Cloud

    static func ycloudInstanceMetadata(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("ycloud_instance_metadata", [
            col("instance_id", .text, .index), col("folder_id", .text), col("cloud_id", .text), col("name", .text),
            col("description", .text), col("hostname", .text), col("zone", .text), col("ssh_public_key", .text),
            col("serial_port_enabled", .text), col("metadata_endpoint", .text, .index),
        ], attributes: .cacheable) { context, schema in
            var rows = TableRows(schema: schema)
            let endpoint = Endpoint(flags: flags, log: log)
            let asked = context.equalities(for: "metadata_endpoint")
            for base in asked.isEmpty ? [endpoint.base] : asked {
                let response: HTTPFetch.Response
                do {
                    response = try HTTPFetch.request(
                        base + "/computeMetadata/v1/instance/?alt=json&recursive=true", headers: [("Metadata-Flavor", "Google")],
                        timeout: endpoint.timeout, maxBytes: 1 << 20, redirects: 0)
                } catch {
                    log.info("ycloud_instance_metadata: Couldn't fetch metadata: endpoint \(base) reason: Couldn't request \(base): \(error)")
                    continue
                }
                guard response.status == 200, let document = parseObject(response.body) else {
                    StatusLog.info("Couldn't fetch metadata: endpoint \(base) reason: YCloud metadata service responded with \(response.status)")
                    continue
                }
                let vendor = document["vendor"], attributes = document["attributes"]
                // "projects/<project>/zones/<zone>": the zone's id.
                let zoneParts = osquerySplit(text(document, "zone"), "/")
                let zone = text(document, "zone").hasPrefix("projects/") && zoneParts.count >= 4 ? zoneParts[3] : ""
                rows.appendRow([
                    .text(text(document, "id")), .text(text(vendor, "folderId")), .text(text(vendor, "cloudId")),
                    .text(text(document, "name")), .text(text(document, "description")), .text(text(document, "hostname")),
                    .text(zone), .text(text(attributes, "ssh-keys")), .text(text(attributes, "serial-port-enable")), .text(base),
                ])
            }
            return rows
        }
    }
}
