// The daemon runs on the config: whoever imports the daemon sees its config types too.
@_exported public import OsqueryConfig
