# The layer rule of difflab's host (README "Architecture"), checked when CMake configures: a file
# under framework/src/<layer>/ may include the SDK ("difflab/...") and the headers of the layers
# listed for it below ("<layer>/..."), nothing above it. A violation stops the configure step with
# the file, the line and the rule.
include_guard(GLOBAL)
cmake_policy(SET CMP0057 NEW)  # if(... IN_LIST ...) in script mode too

set(DIFFLAB_LAYER_sdk "")
set(DIFFLAB_LAYER_process "")  # the process's own: its stop signals
set(DIFFLAB_LAYER_plugin_host process)
# strategy: the sweep's samplers and pruners (strategy/strategy.h), pure functions of their values.
set(DIFFLAB_LAYER_strategy "")
set(DIFFLAB_LAYER_config process plugin_host strategy)
set(DIFFLAB_LAYER_model process strategy plugin_host config)
set(DIFFLAB_LAYER_results process strategy config)
set(DIFFLAB_LAYER_training process strategy plugin_host config model results)
set(DIFFLAB_LAYER_sweep process strategy plugin_host config model results training)
set(DIFFLAB_LAYER_cluster process strategy plugin_host config model results training sweep)
set(DIFFLAB_LAYER_report process strategy config results)
set(DIFFLAB_LAYER_cli process strategy plugin_host config model results training sweep cluster report)

function(difflab_check_layers src_dir)
  file(GLOB layers RELATIVE ${src_dir} ${src_dir}/*)
  set(problems "")
  foreach(layer IN LISTS layers)
    if(NOT IS_DIRECTORY ${src_dir}/${layer})
      continue()
    endif()
    if(NOT DEFINED DIFFLAB_LAYER_${layer})
      string(APPEND problems "\n  framework/src/${layer}/: not a layer of the rule (cmake/difflabLayers.cmake)")
      continue()
    endif()
    set(allowed ${layer} ${DIFFLAB_LAYER_${layer}})
    if(CMAKE_SCRIPT_MODE_FILE)
      file(GLOB_RECURSE sources ${src_dir}/${layer}/*.cpp ${src_dir}/${layer}/*.h)
    else()  # configure again when a source is added or removed
      file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${src_dir}/${layer}/*.cpp ${src_dir}/${layer}/*.h)
    endif()
    foreach(source IN LISTS sources)
      file(STRINGS ${source} lines REGEX "^#include \"[a-z_]+/")
      file(RELATIVE_PATH shown ${src_dir}/../.. ${source})
      foreach(line IN LISTS lines)
        string(REGEX MATCH "^#include \"([a-z_]+)/" _ "${line}")
        set(included ${CMAKE_MATCH_1})
        if(included STREQUAL "difflab")
          continue()
        endif()
        if(NOT included IN_LIST allowed)
          string(REPLACE ";" ", " allowed_text "${allowed}")
          string(APPEND problems "\n  ${shown}: ${line}: the ${layer} layer may include difflab/ and "
                                 "${allowed_text}, not ${included}")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(problems)
    message(FATAL_ERROR "difflab: the layer rule is broken:${problems}")
  endif()
endfunction()

# cmake -DDIFFLAB_CHECK_DIR=<framework/src> -P cmake/difflabLayers.cmake: the check alone (tests).
if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE AND DEFINED DIFFLAB_CHECK_DIR)
  difflab_check_layers(${DIFFLAB_CHECK_DIR})
  message("difflab: the layer rule holds in ${DIFFLAB_CHECK_DIR}")
endif()
