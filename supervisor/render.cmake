# The job configuration renderer: a static library of its own so that the
# supervisor, tests, fuzzers and the benchmark link it alone.
add_library(drover_render STATIC
  ${CMAKE_CURRENT_LIST_DIR}/render_util.c
  ${CMAKE_CURRENT_LIST_DIR}/render_alloc.c
  ${CMAKE_CURRENT_LIST_DIR}/render_unicode.c
  ${CMAKE_CURRENT_LIST_DIR}/render_placeholder.c
  ${CMAKE_CURRENT_LIST_DIR}/pytext.c
  ${CMAKE_CURRENT_LIST_DIR}/render_dump.c
  ${CMAKE_CURRENT_LIST_DIR}/render_apply.c
  ${CMAKE_CURRENT_LIST_DIR}/render_compile.c
  ${CMAKE_CURRENT_LIST_DIR}/render_run.c
  ${CMAKE_CURRENT_LIST_DIR}/render_merge.c
  ${CMAKE_CURRENT_LIST_DIR}/render_blocks.c
  ${CMAKE_CURRENT_LIST_DIR}/render_variables.c
  ${CMAKE_CURRENT_LIST_DIR}/render_prepare.c
  ${CMAKE_CURRENT_LIST_DIR}/render_template.c
  ${CMAKE_CURRENT_LIST_DIR}/jsonschema.c
  ${CMAKE_CURRENT_LIST_DIR}/yamljson.c
  ${CMAKE_CURRENT_LIST_DIR}/render_cli.c
)
target_include_directories(drover_render PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(drover_render PUBLIC PkgConfig::JANSSON PkgConfig::YAML m)

# The top-level build does not list bench/, so the renderer adds its
# benchmark itself.  The binary folder differs from the one bench/ would
# use, and bench/render/CMakeLists.txt returns early when added twice.
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/render/CMakeLists.txt AND NOT TARGET bench_render)
  add_subdirectory(${CMAKE_SOURCE_DIR}/bench/render ${CMAKE_BINARY_DIR}/bench-render)
endif()
