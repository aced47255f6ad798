// tls.cpp: CA + server certificate generation (OpenSSL 3 EVP/X509 APIs) and the kubeconfig text.
#include "tls.hpp"

#include <memory>
#include <stdexcept>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace fakekube {

namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("TLS setup: ") + what + " failed");
}

PkeyPtr new_key() {
    PkeyPtr key(EVP_EC_gen("P-256"));
    check(key != nullptr, "EVP_EC_gen(P-256)");
    return key;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    check(ext != nullptr, "X509V3_EXT_conf_nid");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

X509Ptr new_cert(EVP_PKEY* key, const char* common_name, X509* issuer, EVP_PKEY* issuer_key) {
    X509Ptr cert(X509_new());
    check(cert != nullptr, "X509_new");
    X509_set_version(cert.get(), 2);
    unsigned char serial[16];
    check(RAND_bytes(serial, sizeof serial) == 1, "RAND_bytes");
    serial[0] &= 0x7f;
    BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
    ASN1_INTEGER* sn = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
    BN_free(bn);
    check(sn != nullptr, "BN_to_ASN1_INTEGER");
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * 365);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
    X509* signer = issuer ? issuer : cert.get();
    X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
    if (!issuer) {
        add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
        add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
    } else {
        add_ext(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(cert.get(), issuer, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        add_ext(cert.get(), issuer, NID_ext_key_usage, "serverAuth");
        add_ext(cert.get(), issuer, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
        add_ext(cert.get(), issuer, NID_authority_key_identifier, "keyid:always");
    }
    check(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
    return cert;
}

std::string bio_string(BIO* bio) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<size_t>(len));
}

std::string cert_pem(X509* cert) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
    return bio_string(bio.get());
}

std::string key_pem(EVP_PKEY* key) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1, "PEM_write_bio_PrivateKey");
    return bio_string(bio.get());
}

}  // namespace

TlsMaterial generate_tls_material() {
    PkeyPtr ca_key = new_key();
    X509Ptr ca = new_cert(ca_key.get(), "fake-kube-apiserver-ca", nullptr, nullptr);
    PkeyPtr server_key = new_key();
    X509Ptr server = new_cert(server_key.get(), "fake-kube-apiserver", ca.get(), ca_key.get());
    return {cert_pem(ca.get()), cert_pem(server.get()), key_pem(server_key.get())};
}

std::string base64_encode(const std::string& data) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    while (i + 2 < data.size()) {
        unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8) |
                     static_cast<unsigned char>(data[i + 2]);
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
        i += 3;
    }
    if (i + 1 == data.size()) {
        unsigned v = static_cast<unsigned char>(data[i]) << 16;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == data.size()) {
        unsigned v = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8);
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::string kubeconfig_yaml(const std::string& server_url, const std::string& token, const std::string& ca_cert_pem) {
    return "apiVersion: v1\n"
           "kind: Config\n"
           "clusters:\n"
           "- name: fake\n"
           "  cluster:\n"
           "    server: " + server_url + "\n"
           "    certificate-authority-data: " + base64_encode(ca_cert_pem) + "\n"
           "contexts:\n"
           "- name: fake\n"
           "  context:\n"
           "    cluster: fake\n"
           "    user: fake\n"
           "    namespace: default\n"
           "current-context: fake\n"
           "users:\n"
           "- name: fake\n"
           "  user:\n"
           "    token: " + token + "\n";
}

}  // namespace fakekube
