// One import for extension authors: the client (and the wire types it re-exports) come along.
@_exported public import OsqueryClient
