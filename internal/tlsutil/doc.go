// Package tlsutil holds what raftkv's TLS needs beyond crypto/tls: a
// certificate that reloads itself when its files change, the server and
// client configurations every listener and dialer of a node uses, the test
// that tells a member of the cluster from a client, and a development PKI
// (the CA and certificates "raftkv cert" writes and the tests use).
//
// # Members and clients
//
// One CA signs every certificate of a cluster. Member certificates carry the
// organizational unit [MemberOU] ("raftkv-member") and both the server- and
// client-auth extended key usages: a node presents the same certificate on
// its API and raft listeners and when it dials another member. Client
// certificates carry [ClientOU] ("raftkv-client") and only the client-auth
// usage. Internal endpoints (the raft transport, forwarded writes, read
// index, leadership checks) accept a peer only if [IsMember] holds for the
// connection: a verified chain whose leaf has the member OU. A client
// certificate signed by the same CA is therefore refused there, and an
// unverified certificate never counts.
//
// # Rotation
//
// A [Reloader] serves one certificate and key read from two PEM files.
// Every second it compares the files' size and modification time with
// what it last read, and reads them again when either changed or when the
// modification time is too recent to tell a rewrite in the same clock tick
// apart; a new content (SHA-256 of both files) is loaded. A pair that does
// not parse, or whose key does not match its certificate (a rotation that
// has written one file and not yet the other), is logged and ignored: the
// Reloader keeps serving the old pair and tries again when the files change
// again. [Reloader.Reload] reads the files at once (raftkv serve calls it on
// SIGHUP). Connections already established keep their certificate; new
// handshakes get the new one through [Reloader.GetCertificate] and
// [Reloader.GetClientCertificate]. Nothing here ever logs key material.
//
// # Versions
//
// [ServerConfig] and [ClientConfig] set TLS 1.2 as the minimum version and
// leave cipher suites and curves to crypto/tls's defaults.
//
// # Development PKI
//
// [NewCA] makes a self-signed ECDSA P-256 CA; [CA.IssueMember] and
// [CA.IssueClient] sign member and client certificates with it, and
// [WriteDevPKI] writes a whole set (ca.pem, ca-key.pem, <id>.pem and
// <id>-key.pem per node, client.pem and client-key.pem) for "raftkv cert"
// and "make run-secure". It is meant for development and tests: the CA key
// sits next to the certificates, and nothing revokes a certificate.
package tlsutil
