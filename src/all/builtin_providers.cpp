#include <qrt/qrt.hpp>

#ifdef QRT_HAVE_MEMORY
#include <qrt/memory.hpp>
#endif
#ifdef QRT_HAVE_SQS
#include <qrt/sqs.hpp>
#endif
#ifdef QRT_HAVE_AMQP
#include <qrt/amqp.hpp>
#endif
#ifdef QRT_HAVE_SERVICEBUS
#include <qrt/servicebus.hpp>
#endif

namespace qrt {

const provider_registry& builtin_providers() {
  static const provider_registry registry = [] {
    provider_registry r;
#ifdef QRT_HAVE_MEMORY
    memory::register_provider(r);
#endif
#ifdef QRT_HAVE_SQS
    sqs::register_provider(r);
#endif
#ifdef QRT_HAVE_AMQP
    amqp::register_provider(r);
#endif
#ifdef QRT_HAVE_SERVICEBUS
    servicebus::register_provider(r);
#endif
    return r;
  }();
  return registry;
}

}  // namespace qrt
