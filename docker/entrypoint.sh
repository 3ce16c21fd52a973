#!/bin/sh
# The image's entrypoint, after TF Serving's tf_serving_entrypoint.sh: serve
# $MODEL_BASE_PATH/$MODEL_NAME with gRPC on 8500 and REST on 8501, appending the container's
# arguments (a later --port or --rest_api_port overrides these). With --model_config_file or
# --model_repository among the arguments, those choose the models and MODEL_NAME is unused.
# A first argument that is not an option is run as the command (model-client, sh, ...).
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

case " $* " in
    *" --model_config_file"* | *" --model_repository"* | *" --model_base_path"*)
        exec /usr/local/bin/model-server --port=8500 --rest_api_port=8501 "$@" ;;
esac
exec /usr/local/bin/model-server --port=8500 --rest_api_port=8501 \
    --model_name="${MODEL_NAME:?set MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH:-/models}/${MODEL_NAME}" "$@"
