package receipts

// Internal request headers by which an in-process caller (the gateway, the
// Agent Platform) tells the proxy what a model call is for. The proxy reads
// them for the receipt only; it builds every upstream request from scratch
// and forwards no client header, so they never leave the appliance. They
// are the caller's statement, not verified by the proxy.
const (
	HeaderFeature  = "X-Duo-Receipt-Feature"  // Duo feature or flow (e.g. code_suggestions, duo_chat)
	HeaderWorkflow = "X-Duo-Receipt-Workflow" // Agent Platform workflow id
	HeaderInstance = "X-Duo-Receipt-Instance" // GitLab instance id
	HeaderUser     = "X-Duo-Receipt-User"     // GitLab global user id: hashed with the user-hash key, never stored
)

// MaxHeaderValue bounds each of those header values; the proxy drops a
// longer one, and one with characters other than letters, digits and _-.:/@+=.
const MaxHeaderValue = 128
