{
  "targets": [
    {
      "target_name": "sortednet_blas",
      "sources": ["blas.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-lopenblas", "-lm", "-lpthread"]
    }
  ]
}
