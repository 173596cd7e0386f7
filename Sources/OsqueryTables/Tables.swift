public import OsqueryEngine

/// Registers every built-in Linux table (owned by the core, uuid 0).
public enum BuiltinTables {
    public static func all(registry: PluginRegistry, flags: Flags) -> [any TablePlugin] {
        [
            UtilityTables.osqueryInfo(registry: registry, flags: flags),
            UtilityTables.osqueryFlags(flags: flags),
            UtilityTables.osqueryRegistry(registry: registry),
            UtilityTables.osqueryExtensions(registry: registry, flags: flags),
            UtilityTables.time(),
            FileTables.file(),
            FileTables.hash(flags: flags),
            SystemTables.systemInfo(),
            SystemTables.osVersion(),
            SystemTables.kernelInfo(),
            SystemTables.uptime(),
            SystemTables.memoryInfo(),
            SystemTables.loadAverage(),
            SystemTables.cpuTime(),
            SystemTables.kernelModules(),
            SystemTables.mounts(),
            SystemTables.loggedInUsers(),
            ProcessTables.processes(),
            UserTables.users(),
            UserTables.groups(),
            UserTables.userGroups(),
            NetworkTables.interfaceAddresses(),
            NetworkTables.interfaceDetails(),
            NetworkTables.routes(),
            NetworkTables.etcHosts(),
            NetworkTables.etcServices(),
            NetworkTables.dnsResolvers(),
            NetworkTables.processOpenSockets(),
            NetworkTables.listeningPorts(),
            // osquery's Linux catalogue (issue 18): packages and configuration files.
            PackageTables.debPackages(flags: flags),
            PackageTables.aptSources(flags: flags),
            PackageTables.debPackageFiles(flags: flags),
            ConfigTables.etcProtocols(flags: flags),
            ConfigTables.shadow(flags: flags),
            ConfigTables.systemControls(flags: flags),
            ConfigTables.crontab(flags: flags),
            ConfigTables.sudoers(flags: flags),
            ConfigTables.ulimitInfo(),
            KernelStateTables.arpCache(flags: flags),
            KernelStateTables.sharedMemory(flags: flags),
            KernelStateTables.processEnvs(flags: flags),
            KernelStateTables.processNamespaces(),
            KernelStateTables.interfaceIPv6(flags: flags),
            SSHTables.authorizedKeys(flags: flags),
            SSHTables.knownHosts(flags: flags),
            SSHTables.sshConfigs(flags: flags),
            SSHTables.userSSHKeys(flags: flags),
            ShellTables.shellHistory(flags: flags),
            ShellTables.suidBin(),
            ShellTables.last(flags: flags),
            // osquery's Linux catalogue (issue 18): processes and network.
            ProcessFileTables.processOpenFiles(),
            ProcessFileTables.processOpenPipes(),
            ProcessFileTables.processMemoryMap(flags: flags),
            FirewallTables.iptables(flags: flags),
            ServiceTables.systemdUnits(),
            ServiceTables.startupItems(readMax: { flags[.readMax] }),
            ServiceTables.selinuxSettings(flags: flags),
            ServiceTables.apparmorProfiles(flags: flags),
            // osquery's Linux catalogue (issue 18): hardware and kernel.
            HardwareTables.kernelKeys(flags: flags),
            HardwareTables.memoryMap(flags: flags),
            HardwareTables.blockDevices(flags: flags),
            HardwareTables.pciDevices(flags: flags),
            HardwareTables.usbDevices(flags: flags),
            SMBIOSTables.smbiosTables(flags: flags),
            SMBIOSTables.platformInfo(flags: flags),
            SMBIOSTables.memoryDevices(flags: flags),
            SMBIOSTables.cpuInfo(flags: flags),
            SMBIOSTables.memoryArrays(flags: flags),
            SMBIOSTables.memoryArrayMappedAddresses(flags: flags),
            SMBIOSTables.memoryDeviceMappedAddresses(flags: flags),
            SMBIOSTables.memoryErrorInfo(flags: flags),
            SMBIOSTables.oemStrings(flags: flags),
            SMBIOSTables.acpiTables(flags: flags),
            CPUIDTable.cpuid(flags: flags),
            HardwareTables.mdPersonalities(flags: flags),
            // osquery's Linux catalogue (issue 18): system tables.
            CryptoTables.certificates(flags: flags),
            FileContentTables.extendedAttributes(),
            FileContentTables.magic(),
            FileContentTables.augeas(flags: flags),
            NetworkFetchTables.curl(flags: flags),
            NetworkFetchTables.curlCertificate(flags: flags),
            NetworkFetchTables.prometheusMetrics(flags: flags),
            CloudTables.ec2InstanceMetadata(flags: flags),
            CloudTables.ec2InstanceTags(flags: flags),
            CloudTables.azureInstanceMetadata(flags: flags),
            CloudTables.azureInstanceTags(flags: flags),
            CloudTables.ycloudInstanceMetadata(flags: flags),
            SystemStateTables.mdDevices(flags: flags),
            SystemStateTables.mdDrives(flags: flags),
            SystemStateTables.diskEncryption(flags: flags),
            SystemStateTables.secureboot(flags: flags),
            SystemStateTables.securebootCertificates(flags: flags),
            SystemStateTables.msr(),
            DeviceTables.devicePartitions(),
            DeviceTables.deviceFile(),
            DeviceTables.deviceHash(flags: flags),
            VendorTables.carbonBlackInfo(readMax: { flags[.readMax] }),
            VendorTables.intelMEInfo(),
            // osquery's Linux catalogue (issue 18): package tables.
            PackageTables.rpmPackages(flags: flags),
            PackageTables.rpmPackageFiles(flags: flags),
            PackageTables.yumSources(flags: flags),
            PackageTables.pythonPackages(flags: flags),
            PackageTables.npmPackages(flags: flags),
            PackageTables.portagePackages(flags: flags),
            PackageTables.portageUse(flags: flags),
            PackageTables.portageKeywords(flags: flags),
            PackageTables.chromeExtensions(flags: flags),
            PackageTables.chromeExtensionContentScripts(flags: flags),
            PackageTables.firefoxAddons(flags: flags),
            PackageTables.vscodeExtensions(flags: flags),
            PackageTables.jetbrainsPlugins(flags: flags),
        ]
    }

    /// osquery's foreign tables (`--enable_foreign`); those already there stay as they are.
    package static func registerForeign(into registry: PluginRegistry) {
        ForeignTables.register(into: registry)
    }

    /// Add the built-in tables and the core's other plugins to a registry.
    public static func register(into registry: PluginRegistry, flags: Flags) {
        for table in all(registry: registry, flags: flags) { registry.addTable(table) }
        if flags[.enableForeign] { registerForeign(into: registry) }
        // The SQL engine and the shell's in-memory database are core plugins too.
        registry.add(RegistryItem(registry: "sql", name: "sql", isInternal: true))
        registry.add(RegistryItem(registry: "database", name: "ephemeral", isInternal: true))
        registry.setActive(registry: "database", name: "ephemeral")
    }
}
