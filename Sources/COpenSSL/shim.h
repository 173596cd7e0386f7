#ifndef OSQUERY_SWIFT_COPENSSL_SHIM_H
#define OSQUERY_SWIFT_COPENSSL_SHIM_H

/* The system's OpenSSL (Debian libssl-dev): osquery reads certificates and speaks TLS with it,
   so its text forms (names, times, serials) are the ones osquery prints. */
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Macros and type-generic stacks Swift cannot import. */
static inline int osq_x509_info_count(STACK_OF(X509_INFO) *s) { return sk_X509_INFO_num(s); }
static inline X509 *osq_x509_info_cert(STACK_OF(X509_INFO) *s, int i) { return sk_X509_INFO_value(s, i)->x509; }
static inline void osq_x509_info_free(STACK_OF(X509_INFO) *s) { sk_X509_INFO_pop_free(s, X509_INFO_free); }
static inline long osq_bio_mem_data(BIO *b, char **p) { return BIO_get_mem_data(b, p); }
static inline void osq_openssl_free(void *p) { OPENSSL_free(p); }
static inline long osq_ssl_set_sni(SSL *s, const char *name) { return SSL_set_tlsext_host_name(s, name); }
static inline unsigned long osq_xn_flag_oneline(void) { return XN_FLAG_ONELINE; }
/* A server that closes without close_notify ends the body (as plain TCP's end does); with
   `modern`, TLS 1.2 is the least accepted (osquery's client refuses SSLv3, TLS 1.0 and 1.1). */
static inline void osq_ssl_ctx_setup(SSL_CTX *ctx, int modern) {
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (modern) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
static inline int osq_stack_count(const OPENSSL_STACK *s) { return OPENSSL_sk_num(s); }
static inline void *osq_stack_value(const OPENSSL_STACK *s, int i) { return OPENSSL_sk_value(s, i); }
static inline void osq_general_names_free(GENERAL_NAMES *g) { GENERAL_NAMES_free(g); }
static inline int osq_x509_signature(X509 *x, const unsigned char **data) {
    const ASN1_BIT_STRING *sig = NULL;
    X509_get0_signature(&sig, NULL, x);
    if (sig == NULL) return 0;
    *data = ASN1_STRING_get0_data(sig);
    return ASN1_STRING_length(sig);
}

/* An extension of a certificate as X509V3_EXT_print prints it (its raw data when OpenSSL
   cannot), into `out`; 0 when the certificate has no such extension. */
static inline int osq_print_extension(X509 *x, int nid, BIO *out) {
    const STACK_OF(X509_EXTENSION) *list = X509_get0_extensions(x);
    if (list == NULL) return 0;
    int index = X509v3_get_ext_by_NID(list, nid, -1);
    if (index < 0) return 0;
    X509_EXTENSION *ext = X509v3_get_ext(list, index);
    if (!X509V3_EXT_print(out, ext, 0, 0)) ASN1_STRING_print(out, X509_EXTENSION_get_data(ext));
    return 1;
}

/* osquery's key strength: bits for RSA and DSA (the key's maximum signature size times 8),
   the curve's long name for EC keys; NULL otherwise. Writes into buf. */
static inline const char *osq_key_strength(X509 *x, char *buf, int size) {
    X509_PUBKEY *pub = X509_get_X509_PUBKEY(x);
    ASN1_OBJECT *alg = NULL;
    if (pub == NULL || X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, pub) == 0 || alg == NULL) return NULL;
    int nid = OBJ_obj2nid(alg);
    EVP_PKEY *key = X509_get_pubkey(x);
    if (key == NULL) return NULL;
    const char *out = NULL;
    if (nid == NID_rsaEncryption || nid == NID_dsa) {
        int bytes = EVP_PKEY_get_size(key);
        if (bytes > 0) { snprintf(buf, (size_t)size, "%d", bytes * 8); out = buf; }
    } else if (nid == NID_X9_62_id_ecPublicKey) {
        char group[80];
        size_t len = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) == 1) {
            int curve = OBJ_txt2nid(group);
            const char *name = curve == NID_undef ? NULL : OBJ_nid2ln(curve);
            if (name != NULL) { snprintf(buf, (size_t)size, "%s", name); out = buf; }
        }
    }
    EVP_PKEY_free(key);
    return out;
}

#endif
