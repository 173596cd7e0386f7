// A config plugin: a static schedule plus one pack resolved through genPack.
import OsqueryExtension

let config = ConfigPlugin(
    "swift_static",
    genPack: { name, _ in
        #"{"queries":{"\#(name)_uptime":{"query":"select * from uptime","interval":60}}}"#
    },
    genConfig: {
        [
            "swift_static": #"""
            {"options":{"host_identifier":"hostname"},
             "schedule":{"swift_time":{"query":"select * from time","interval":30}},
             "packs":{"swift_pack":"from-extension"}}
            """#
        ]
    })

await Extension("swift_static_config", version: "1.0.0", plugins: [config]).run()
