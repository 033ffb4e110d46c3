{
  "targets": [
    {
      "target_name": "sortednet_blas",
      "sources": ["blas.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-fopenmp"],
      "libraries": ["-lopenblas", "-lm", "-lpthread", "-fopenmp"]
    }
  ]
}
