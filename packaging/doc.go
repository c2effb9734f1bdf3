// Package packaging holds what onramp's .deb and .rpm packages are made of
// (make package runs package.sh, which runs nfpm with nfpm.yaml): the
// systemd units (package systemd), the onramp user (sysusers.d) and the
// edge's state directory (tmpfiles.d), the example configuration under
// /etc/onramp (examples) and the maintainer scripts (scripts). Its tests
// build the packages, install the .deb into a fresh root and check what a
// unit expects is where it expects it.
package packaging
