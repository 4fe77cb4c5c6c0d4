# Prints one found/not-found line per optional dependency at configure time.
function(ml_summary what found)
  if(found)
    message(STATUS "metalearn: ${what}: found")
  else()
    message(STATUS "metalearn: ${what}: not found")
  endif()
endfunction()
