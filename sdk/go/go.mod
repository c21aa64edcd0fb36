module fezz.dev/sdk/go

go 1.19
