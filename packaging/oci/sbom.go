package oci

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The SPDX 2.3 JSON subset we write. Field names and required fields follow
// the SPDX 2.3 specification (clause 6 document creation, 7 packages, 11
// relationships); validators such as `pyspdxtools` accept it.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string            `json:"SPDXID"`
	Name             string            `json:"name"`
	VersionInfo      string            `json:"versionInfo,omitempty"`
	Supplier         string            `json:"supplier,omitempty"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	Checksums        []spdxChecksum    `json:"checksums,omitempty"`
	LicenseConcluded string            `json:"licenseConcluded"`
	LicenseDeclared  string            `json:"licenseDeclared"`
	CopyrightText    string            `json:"copyrightText"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
	Comment          string            `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// noAssertion is SPDX's "we do not say".
const noAssertion = "NOASSERTION"

// sbomInput is what the SBOM describes besides the binary's build info.
type sbomInput struct {
	Version           string    // image version
	Arch              string    // GOARCH
	Source            string    // source repository URL
	Created           time.Time // document creation time (the build's time, for reproducibility)
	CACertsVersion    string    // Debian ca-certificates version the bundle came from; empty: unknown
	CACertsSHA256     string    // hex SHA-256 of the bundle
	BinarySHA256      string    // hex SHA-256 of the binary
	License           string    // the project's SPDX licence expression
	BinaryPathInImage string
}

// makeSBOM writes an SPDX 2.3 JSON document for the image's binary — its
// main module, the Go standard library and every module `go version -m`
// lists, with package URLs — and the CA certificate bundle beside it.
func makeSBOM(bi *buildinfo.BuildInfo, in sbomInput) ([]byte, error) {
	mainID := "SPDXRef-Package-duo-confidential"
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        fmt.Sprintf("duo-confidential-%s-%s", in.Version, in.Arch),
		// Unique per content, stable per build: the binary's digest is in it.
		DocumentNamespace: fmt.Sprintf("%s/spdx/%s/%s/%s", strings.TrimSuffix(in.Source, "/"), in.Version, in.Arch, in.BinarySHA256),
		CreationInfo: spdxCreationInfo{
			Created:  in.Created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: duo-confidential-packaging-oci", "Organization: duo-confidential"},
		},
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		SPDXID:           mainID,
		Name:             bi.Main.Path,
		VersionInfo:      in.Version,
		DownloadLocation: downloadLocation(in.Source),
		Checksums:        []spdxChecksum{{"SHA256", in.BinarySHA256}},
		LicenseConcluded: noAssertion,
		LicenseDeclared:  in.License,
		CopyrightText:    noAssertion,
		ExternalRefs:     []spdxExternalRef{purl("golang/"+bi.Main.Path, "v"+strings.TrimPrefix(in.Version, "v"))},
		Comment:          "The static binary at " + in.BinaryPathInImage + "; build settings: " + buildSettings(bi),
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", mainID})
	add := func(p spdxPackage) {
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{mainID, "DEPENDS_ON", p.SPDXID})
	}
	add(spdxPackage{
		SPDXID:           "SPDXRef-Package-go-stdlib",
		Name:             "stdlib",
		VersionInfo:      bi.GoVersion,
		DownloadLocation: "https://go.dev/dl/",
		LicenseConcluded: noAssertion,
		LicenseDeclared:  "BSD-3-Clause",
		CopyrightText:    noAssertion,
		ExternalRefs:     []spdxExternalRef{purl("golang/stdlib", bi.GoVersion)},
		Comment:          "The Go toolchain and standard library linked into the binary.",
	})
	for i, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		add(spdxPackage{
			SPDXID:           fmt.Sprintf("SPDXRef-Package-go-module-%d", i+1),
			Name:             m.Path,
			VersionInfo:      m.Version,
			DownloadLocation: "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			LicenseConcluded: noAssertion,
			LicenseDeclared:  noAssertion,
			CopyrightText:    noAssertion,
			ExternalRefs:     []spdxExternalRef{purl("golang/"+m.Path, m.Version)},
			Comment:          "Go module checksum " + m.Sum,
		})
	}
	caVersion, caRef := in.CACertsVersion, []spdxExternalRef(nil)
	if caVersion != "" {
		caRef = []spdxExternalRef{purl("deb/debian/ca-certificates", caVersion)}
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		SPDXID:           "SPDXRef-Package-ca-certificates",
		Name:             "ca-certificates",
		VersionInfo:      caVersion,
		Supplier:         "Organization: Debian",
		DownloadLocation: noAssertion,
		FilesAnalyzed:    false,
		Checksums:        []spdxChecksum{{"SHA256", in.CACertsSHA256}},
		LicenseConcluded: noAssertion,
		LicenseDeclared:  "MPL-2.0",
		CopyrightText:    noAssertion,
		ExternalRefs:     caRef,
		Comment:          "The Mozilla CA bundle at " + CACertsPath + ", as Debian's ca-certificates builds it.",
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Package-ca-certificates"})
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return append(b, '\n'), nil
}

// purl is a package URL reference (https://github.com/package-url/purl-spec).
func purl(name, version string) spdxExternalRef {
	return spdxExternalRef{"PACKAGE-MANAGER", "purl", "pkg:" + name + "@" + version}
}

// downloadLocation is the source as SPDX wants it, or NOASSERTION.
func downloadLocation(src string) string {
	if src == "" {
		return noAssertion
	}
	return "git+" + src
}

// buildSettings lists the settings that make the binary what it is (cgo,
// trimpath, target, VCS revision) as k=v pairs.
func buildSettings(bi *buildinfo.BuildInfo) string {
	var s []string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "CGO_ENABLED", "GOOS", "GOARCH", "-trimpath", "-ldflags", "vcs.revision", "vcs.time", "vcs.modified":
			s = append(s, kv.Key+"="+kv.Value)
		}
	}
	return strings.Join(s, " ")
}

// sha256Hex is the hex SHA-256 of b.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
