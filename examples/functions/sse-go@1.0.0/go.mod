module fezz.dev/examples/sse-go

go 1.19

require fezz.dev/sdk/go v0.0.0

replace fezz.dev/sdk/go => ../../../sdk/go
