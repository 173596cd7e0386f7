#ifndef OSQUERY_SWIFT_CYARA_SHIM_H
#define OSQUERY_SWIFT_CYARA_SHIM_H
/* libyara (Debian's libyara-dev), and accessors for what its iteration macros reach (Swift
   imports no macros with loops). */
#include <yara.h>
#include <stdint.h>

typedef void (*osq_yr_text_visitor)(const char *text, void *context);
typedef void (*osq_yr_match_visitor)(const char *identifier, int64_t offset, void *context);

static inline const char *osq_yr_rule_identifier(const YR_RULE *rule) {
    return rule->identifier;
}

/* Calls `visit` with each tag of `rule`. */
static inline void osq_yr_rule_tags(const YR_RULE *rule, osq_yr_text_visitor visit, void *context) {
    const char *tag = NULL;
    yr_rule_tags_foreach(rule, tag) { visit(tag, context); }
}

/* Calls `visit` with the identifier and offset of each (non-private) match of `rule`'s strings. */
static inline void osq_yr_rule_matches(YR_SCAN_CONTEXT *scan, const YR_RULE *rule, osq_yr_match_visitor visit, void *context) {
    YR_STRING *string = NULL;
    YR_MATCH *match = NULL;
    yr_rule_strings_foreach(rule, string) {
        yr_string_matches_foreach(scan, string, match) { visit(string->identifier, match->base + match->offset, context); }
    }
}
#endif
