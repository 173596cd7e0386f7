// One import for extension authors: the client comes along (with `ThriftWriter`, which a custom
// `ColumnValue` may write its text to).
@_exported public import OsqueryClient
// The table vocabulary (column types and options, constraints, the query context's parts,
// JSON) is shared with the core, which the SDK never imports.
@_exported public import OsqueryVocabulary
