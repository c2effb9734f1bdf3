package l3router

import "slices"

// Names returns the peer names and group names the rules of c mention,
// each once, in order of appearance. A router refuses rules naming a peer
// or group it does not know; the edge uses Names to register a peer without
// routes for each of them before the real peers exist.
func (c *ACLConfig) Names() (peers []PeerID, groups []string) {
	for i := range c.Rules {
		for _, s := range []*Selector{&c.Rules[i].From, &c.Rules[i].To} {
			for _, p := range s.Peers {
				if !slices.Contains(peers, p) {
					peers = append(peers, p)
				}
			}
			for _, g := range s.Groups {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
	}
	return peers, groups
}

// Check validates c on its own, as if every peer and group it names
// existed: actions, protocols, ports, kinds and prefixes. Errors name the
// rule and field and wrap ErrBadRule.
func (c *ACLConfig) Check() error {
	names, groups := c.Names()
	var peers []*peer
	for _, n := range names {
		peers = append(peers, &peer{id: n, kind: KindClient, idx: len(peers)})
	}
	for _, g := range groups {
		peers = append(peers, &peer{id: PeerID("group " + g), kind: KindClient, groups: []string{g}, idx: len(peers)})
	}
	_, err := compileACL(c, peers)
	return err
}
