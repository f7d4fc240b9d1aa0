# difflab_add_plugin(NAME FAMILY family SOURCES ... [OUTPUT_DIRECTORY dir] [DEFINITIONS ...] [NO_INSTALL]
#                    [TORCH_FRONTEND])
#
# Builds one plugin as its own shared library, difflab-<family>-<name>.so: a MODULE linked to the
# SDK (difflab::sdk) alone, with hidden visibility and a version script, so that it exports its
# ABI record and metadata function and nothing else. Used by difflab's own tree and, through
# find_package(difflab), by out-of-tree projects; the library lands in OUTPUT_DIRECTORY (default:
# the build's plugin folder in difflab's tree, the current binary folder elsewhere) and installs
# into <libdir>/difflab/plugins. In difflab's own tree a plugin compiles against the plugins'
# precompiled header (LibTorch's tensor API and modules, what the SDK's headers include), or with
# TORCH_FRONTEND, for one that includes <torch/torch.h> (optimisers, serialisation, TorchScript),
# against the host's.
include_guard(GLOBAL)
include(GNUInstallDirs)

function(difflab_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL;TORCH_FRONTEND" "FAMILY;OUTPUT_DIRECTORY" "SOURCES;DEFINITIONS" ${ARGN})
  set(families schedule loss sampler network dataset features)
  if(NOT ARG_FAMILY IN_LIST families)
    message(FATAL_ERROR "difflab_add_plugin(${name}): FAMILY must be one of ${families}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "difflab_add_plugin(${name}): SOURCES are missing")
  endif()
  set(target difflab_${ARG_FAMILY}_${name})
  set(version_script ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/difflab_plugin.map)
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE difflab::sdk)
  target_compile_definitions(${target} PRIVATE ${ARG_DEFINITIONS})
  # --no-undefined: a symbol the SDK does not export fails the link, not the first load.
  target_link_options(${target} PRIVATE "LINKER:--version-script=${version_script}" "LINKER:--no-undefined")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${version_script})
  if(TARGET difflab_warnings)  # difflab's own tree
    target_link_libraries(${target} PRIVATE difflab_warnings)
  endif()
  set_target_properties(${target} PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(COMMAND difflab_use_plugin_pch AND NOT ARG_TORCH_FRONTEND)
    difflab_use_plugin_pch(${target})
  elseif(COMMAND difflab_use_pch)
    difflab_use_pch(${target})
  endif()
  if(NOT ARG_OUTPUT_DIRECTORY)
    if(DEFINED DIFFLAB_PLUGIN_OUTPUT_DIR)
      set(ARG_OUTPUT_DIRECTORY ${DIFFLAB_PLUGIN_OUTPUT_DIR})
    else()
      set(ARG_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    endif()
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME difflab-${ARG_FAMILY}-${name}
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/difflab/plugins)
    set_property(GLOBAL APPEND PROPERTY DIFFLAB_PLUGIN_TARGETS ${target})
  endif()
endfunction()
