// One import for extension authors: the client (and the wire types it re-exports) come along.
@_exported public import OsqueryClient
// The table vocabulary (column types and options, constraints, the query context's parts,
// JSON) is shared with the core, which the SDK never imports.
@_exported public import OsqueryVocabulary
