package statedir

// The state directory's layout: the names of the files and directories the
// appliance keeps in it. Every package that reads or writes one of them uses
// these names, so the layout is written down once.
const (
	// TrustLogFile is the hash-chained log of every attestation verdict.
	TrustLogFile = "trust-log.jsonl"
	// CollateralFile is the default collateral bundle (attestation.collateral.bundle).
	CollateralFile = "collateral.json"
	// AdminPasswordFile is the admin password hash when admin.password_file is unset.
	AdminPasswordFile = "admin-password"
	// KeysDir holds the gateway's self-signed JWT keys.
	KeysDir = "keys"
	// KeysFile is the PEM file of those keys inside KeysDir.
	KeysFile = "keys.pem"
	// CertmagicDir is certmagic's storage: ACME account and managed certificates.
	CertmagicDir = "certmagic"
	// LocalCADir holds the local CA's root key and certificate.
	LocalCADir = "local-ca"
	// LocalCAKeyFile is the local CA's private key inside LocalCADir.
	LocalCAKeyFile = "ca.key"
	// ReceiptsDir holds the per-request receipt log: rotated receipt files,
	// the checkpoint signing key (and its exported public key) and the
	// user-hash key.
	ReceiptsDir = "receipts"
	// ReceiptsPublicKeyFile is the receipt checkpoint key's public half inside
	// ReceiptsDir (0644: it is handed to auditors).
	ReceiptsPublicKeyFile = "signing.pub"
	// LocalCACertFile is the local CA's root certificate inside LocalCADir.
	LocalCACertFile = "ca.crt"
	// GitLabConnectFile is what `gitlab connect` remembers: GitLab's ids of
	// the appliance's model records and the features it assigned.
	GitLabConnectFile = "gitlab-connect.json"
	// GitLabAdminTokenFile is the GitLab admin token kept for the drift
	// watch when gitlab_admin.token_file is unset (only if the admin opts in).
	GitLabAdminTokenFile = "gitlab-admin-token"
)
