// Package localexec is a duo-cli-like executor for tests and demos: it
// answers the file, git and command actions of the DuoWorkflow contract
// inside one directory (a git checkout), confined with os.Root, with
// bounded output and a timeout per command. It is not the production
// executor — GitLab's CI job runs @gitlab/duo-cli.
package localexec
