[
  inputs: [
    "{mix,.formatter}.exs",
    "{config,lib,test,bench,demo}/**/*.{ex,exs}",
    "examples/shop/{mix,.formatter}.exs",
    "examples/shop/{config,lib}/**/*.{ex,exs}"
  ]
]
