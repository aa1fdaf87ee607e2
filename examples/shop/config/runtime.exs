import Config

# In a pod, PodDist finds the API server and its credentials by itself (the service
# account); POD_DIST_API_URL and friends only point it elsewhere, as the tests do.
config :shop, :cluster,
  label_selector: System.get_env("POD_DIST_LABEL_SELECTOR"),
  api_url: System.get_env("POD_DIST_API_URL"),
  ca_file: System.get_env("POD_DIST_CA_FILE"),
  token_file: System.get_env("POD_DIST_TOKEN_FILE")
