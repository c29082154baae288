# Finds every external dependency, each from a Debian package. When one is
# missing the configure step stops with the package to install, rather than
# failing later with a missing header.

set(DF_INSTALL_HINT "run deploy/install-deps.sh, or: sudo apt-get install")

find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "dreamfleet needs pkg-config (Debian package pkg-config); ${DF_INSTALL_HINT} pkg-config")
endif()

# df_require_pkg(<prefix> <pkg-config module> <Debian package>)
# Defines the imported target PkgConfig::<prefix>.
function(df_require_pkg prefix module debian)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "dreamfleet needs ${module} (Debian package ${debian}); ${DF_INSTALL_HINT} ${debian}")
  endif()
  message(STATUS "Found ${module} ${${prefix}_VERSION}")
endfunction()

# df_require_program(<var> <program> <Debian package>)
function(df_require_program var program debian)
  find_program(${var} ${program})
  if(NOT ${var})
    message(FATAL_ERROR "dreamfleet needs ${program} (Debian package ${debian}); ${DF_INSTALL_HINT} ${debian}")
  endif()
endfunction()

df_require_pkg(VULKAN vulkan libvulkan-dev)
df_require_pkg(ZMQ libzmq libzmq3-dev)
df_require_pkg(CZMQ libczmq libczmq-dev)
df_require_pkg(PROTOBUF_C libprotobuf-c libprotobuf-c-dev)
df_require_pkg(UV libuv libuv1-dev)
df_require_pkg(LZ4 liblz4 liblz4-dev)
df_require_pkg(SQLITE sqlite3 libsqlite3-dev)
df_require_pkg(OPENBLAS openblas libopenblas-dev)
df_require_pkg(JANSSON jansson libjansson-dev)
df_require_pkg(ZLIB zlib zlib1g-dev)
df_require_pkg(PNG libpng libpng-dev)
df_require_pkg(JPEG libjpeg libjpeg62-turbo-dev)
df_require_pkg(WEBP libwebp libwebp-dev)
df_require_pkg(WEBPMUX libwebpmux libwebp-dev)
df_require_pkg(WEBPDEMUX libwebpdemux libwebp-dev)
df_require_pkg(SWSCALE libswscale libswscale-dev)
df_require_pkg(HEIF libheif libheif-dev)
df_require_pkg(LCMS lcms2 liblcms2-dev)

# OpenCV (face detection in prep): Debian's split packages ship no
# pkg-config file without the whole of libopencv-dev, so by hand.
find_path(DF_OPENCV_INCLUDE opencv2/objdetect.hpp PATHS /usr/include/opencv4)
find_library(DF_OPENCV_CORE opencv_core)
find_library(DF_OPENCV_IMGPROC opencv_imgproc)
find_library(DF_OPENCV_OBJDETECT opencv_objdetect)
find_path(DF_HAAR_DIR haarcascade_frontalface_default.xml PATHS /usr/share/opencv4/haarcascades)
if(NOT DF_OPENCV_INCLUDE OR NOT DF_OPENCV_CORE OR NOT DF_OPENCV_IMGPROC OR NOT DF_OPENCV_OBJDETECT)
  message(FATAL_ERROR "dreamfleet needs OpenCV's objdetect and imgproc (Debian packages libopencv-objdetect-dev "
                      "libopencv-imgproc-dev libopencv-core-dev); ${DF_INSTALL_HINT} libopencv-objdetect-dev "
                      "libopencv-imgproc-dev libopencv-core-dev")
endif()
if(NOT DF_HAAR_DIR)
  message(FATAL_ERROR "dreamfleet needs OpenCV's Haar cascades (Debian package opencv-data); ${DF_INSTALL_HINT} opencv-data")
endif()
message(STATUS "Found OpenCV headers in ${DF_OPENCV_INCLUDE}, cascades in ${DF_HAAR_DIR}")

df_require_program(DF_GLSLANG glslangValidator glslang-tools)
df_require_program(DF_SPIRV_VAL spirv-val spirv-tools)
df_require_program(DF_PROTOC_C protoc-c protobuf-c-compiler)

find_package(Threads REQUIRED)
find_library(DF_LIBM m REQUIRED)
