/** /_ping, /version and /info: what clients call first to find out whom they talk to. */
import type { FastifyInstance } from 'fastify'
import type { ImageService } from '../../image/index.js'
import { API_VERSION, INDEX_SERVER_ADDRESS, MIN_API_VERSION } from '../constants.js'
import type { SystemInfo } from '../types.js'

export interface SystemRoutesComponents {
  images: ImageService
  system: SystemInfo
}

/** dockerd's default insecure range; Joey's registry client also speaks plain HTTP to loopback. */
const LOOPBACK_CIDRS = ['127.0.0.0/8', '::1/128']

export function systemRoutes (components: SystemRoutesComponents): (app: FastifyInstance) => Promise<void> {
  const { images, system } = components
  return async (app) => {
    app.route({
      method: ['GET', 'HEAD'],
      url: '/_ping',
      exposeHeadRoute: false,
      handler: async (request, reply) => {
        reply
          .header('Docker-Experimental', 'false')
          .header('Cache-Control', 'no-cache, no-store, must-revalidate')
          .header('Pragma', 'no-cache')
          .type('text/plain; charset=utf-8')
        if (request.method === 'HEAD') return reply.header('Content-Length', '0').send()
        return reply.send('OK')
      }
    })

    app.get('/version', async () => {
      const details = {
        ApiVersion: API_VERSION,
        Arch: system.arch,
        BuildTime: system.buildTime,
        Experimental: 'false',
        GitCommit: system.gitCommit,
        GoVersion: system.runtimeVersion,
        KernelVersion: system.kernelVersion,
        MinAPIVersion: MIN_API_VERSION,
        Os: system.osType
      }
      return {
        Platform: { Name: 'Joey Engine' },
        Components: [{ Name: 'Engine', Version: system.version, Details: details }],
        Version: system.version,
        ApiVersion: API_VERSION,
        MinAPIVersion: MIN_API_VERSION,
        GitCommit: system.gitCommit,
        GoVersion: system.runtimeVersion,
        Os: system.osType,
        Arch: system.arch,
        KernelVersion: system.kernelVersion,
        BuildTime: system.buildTime
      }
    })

    app.get('/info', async () => {
      const count = (await images.list()).length
      const indexConfigs: Record<string, unknown> = {
        'docker.io': { Name: 'docker.io', Mirrors: [], Secure: true, Official: true }
      }
      for (const host of system.insecureRegistries) indexConfigs[host] = { Name: host, Mirrors: [], Secure: false, Official: false }
      return {
        ID: system.id,
        Containers: 0,
        ContainersRunning: 0,
        ContainersPaused: 0,
        ContainersStopped: 0,
        Images: count,
        Driver: system.driver,
        DriverStatus: [['Data root', system.dataRoot]],
        Plugins: { Volume: [], Network: [], Authorization: null, Log: [] },
        MemoryLimit: false,
        SwapLimit: false,
        CpuCfsPeriod: false,
        CpuCfsQuota: false,
        CPUShares: false,
        CPUSet: false,
        PidsLimit: false,
        IPv4Forwarding: false,
        Debug: false,
        NFd: 0,
        OomKillDisable: false,
        NGoroutines: 0,
        SystemTime: new Date().toISOString(),
        LoggingDriver: 'none',
        CgroupDriver: 'none',
        CgroupVersion: '',
        NEventsListener: 0,
        KernelVersion: system.kernelVersion,
        OperatingSystem: system.operatingSystem,
        OSVersion: system.osVersion,
        OSType: system.osType,
        Architecture: system.machine,
        IndexServerAddress: INDEX_SERVER_ADDRESS,
        RegistryConfig: {
          AllowNondistributableArtifactsCIDRs: null,
          AllowNondistributableArtifactsHostnames: null,
          InsecureRegistryCIDRs: LOOPBACK_CIDRS,
          IndexConfigs: indexConfigs,
          Mirrors: null
        },
        NCPU: system.ncpu,
        MemTotal: system.memTotal,
        GenericResources: null,
        DockerRootDir: system.dataRoot,
        HttpProxy: '',
        HttpsProxy: '',
        NoProxy: '',
        Name: system.name,
        Labels: [],
        ExperimentalBuild: false,
        ServerVersion: system.version,
        Runtimes: {},
        DefaultRuntime: '',
        Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
        LiveRestoreEnabled: false,
        Isolation: '',
        InitBinary: '',
        SecurityOptions: [],
        Warnings: null
      }
    })
  }
}
