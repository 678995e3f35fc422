module eni-operator.io/libcni-driver

go 1.26

require github.com/containernetworking/cni v1.3.0
