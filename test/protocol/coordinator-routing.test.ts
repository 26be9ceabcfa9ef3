import { describe, expect, it } from 'vitest';
import { delayTopicName } from '../../src/broker/delay/delay-store.js';
import { consumerOffsetsTopicName } from '../../src/broker/groups/consumer-offsets-store.js';
import { producerStateTopicName } from '../../src/broker/producers/producer-state-store.js';
import { queueStateTopicName } from '../../src/broker/queues/queue-state-store.js';
import { transactionsTopicName } from '../../src/broker/transactions/transaction-store.js';
import { coordinatorTopicOf, coordinatorTopics } from '../../src/protocol/coordinator-routing.js';
import { Opcode } from '../../src/protocol/opcodes.js';

describe('coordinator routing', () => {
  it('names the internal topics the stores use', () => {
    expect(coordinatorTopics).toEqual({
      groups: consumerOffsetsTopicName,
      queues: queueStateTopicName,
      transactions: transactionsTopicName,
      producers: producerStateTopicName,
      delay: delayTopicName,
    });
  });

  it('routes service requests to their internal topic and data requests nowhere', () => {
    expect(coordinatorTopicOf(Opcode.joinGroup)).toBe('__consumer_offsets');
    expect(coordinatorTopicOf(Opcode.queueAck)).toBe('__queue_state');
    expect(coordinatorTopicOf(Opcode.txnEnd)).toBe('__transactions');
    expect(coordinatorTopicOf(Opcode.initProducer)).toBe('__producer_state');
    expect(coordinatorTopicOf(Opcode.delayStats)).toBe('__delay');
    for (const opcode of [Opcode.hello, Opcode.produce, Opcode.fetch, Opcode.createTopic, Opcode.metadata]) {
      expect(coordinatorTopicOf(opcode)).toBeUndefined();
    }
  });
});
