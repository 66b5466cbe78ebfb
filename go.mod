module github.com/plumb-os/plumb

go 1.26
