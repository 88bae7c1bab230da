package main

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// zillaVault is one of a zilla.yaml's vaults; the filesystem type is read.
type zillaVault struct {
	Type    string    `yaml:"type"`
	Options yaml.Node `yaml:"options"`
}

type zillaVaultOptions struct {
	Keys  *zillaStore `yaml:"keys"`
	Trust *zillaStore `yaml:"trust"`
}

// zillaStore is a key or trust store file: pkcs12 (Zilla's default) or pem.
type zillaStore struct {
	Store    string `yaml:"store"`
	Type     string `yaml:"type"`
	Password string `yaml:"password"` // ${{env.X}} already replaced
}

// vaults reads the filesystem vaults; a tls binding names one for its key.
func (t *zillaTranslation) vaults() error {
	t.vault = map[string]zillaVaultOptions{}
	for _, name := range sortedKeys(t.z.Vaults) {
		v := t.z.Vaults[name]
		field := "vaults." + name
		if v.Type != "filesystem" {
			return fmt.Errorf("%s.type: %q is not supported (ssekafka reads filesystem vaults)", field, v.Type)
		}
		var o zillaVaultOptions
		if err := decodeStrict(&v.Options, &o, field+".options"); err != nil {
			return err
		}
		for _, s := range []struct {
			field string
			store *zillaStore
		}{{field + ".options.keys", o.Keys}, {field + ".options.trust", o.Trust}} {
			if err := s.store.check(s.field); err != nil {
				return err
			}
		}
		if o.Trust != nil {
			t.note("%s.options.trust ignored: the edge asks no client certificates", field)
		}
		t.vault[name] = o
	}
	return nil
}

func (s *zillaStore) check(field string) error {
	switch {
	case s == nil:
		return nil
	case s.Store == "":
		return fmt.Errorf("%s.store: required", field)
	case s.Type == "jks":
		return fmt.Errorf("%s.type: jks is not supported (convert it: keytool -importkeystore -deststoretype pkcs12)", field)
	case s.Type != "" && s.Type != "pkcs12" && s.Type != "pem":
		return fmt.Errorf("%s.type: %q is not supported (pkcs12 or pem)", field, s.Type)
	}
	return nil
}
